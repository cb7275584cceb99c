/* choreo start, choreo signal and choreo workflows: starting, signalling and cancelling durable
 * workflows on a running host, and looking at their instances, each with its history as a
 * timeline (control.c: ops start, signal, cancel and workflows). */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The commands to a workflow instance (control.c's start, cancel and signal): [--id KEY], then
 * one word for each of fields (workflow, id, ...), then optionally `last`: JSON text, or plain
 * text when last_is_text. Prints what was appended. */
static int workflows_command(const cli_args *a, int from, const char *op, const char *usage,
                             const char *const *fields, int nfields, const char *last,
                             bool last_is_text) {
  const char *args[8], *key_arg = NULL;
  int nargs = 0;
  for (int i = from; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    if (strcmp(arg, "--id") == 0) {
      if (i + 1 >= a->nrest || !a->rest[i + 1][0] || strlen(a->rest[i + 1]) > 200)
        return cli_usage("%s", "--id needs a key of 1 to 200 bytes");
      key_arg = a->rest[++i];
    } else if (arg[0] == '-' && arg[1] == '-') {
      return cli_usage("unknown option '%s'", arg);
    } else if (nargs == nfields + 1) {
      return cli_usage("%s", usage);
    } else {
      args[nargs++] = arg;
    }
  }
  if (nargs < nfields) return cli_usage("%s", usage);
  char key[256], err[256];
  if (key_arg) snprintf(key, sizeof key, "%s", key_arg);
  else cli_new_key(key, sizeof key);
  char *value = NULL;
  if (nargs > nfields && last_is_text) {
    value = strdup(args[nfields]);
  } else if (nargs > nfields) {
    value = cli_read_json(args[nfields], err, sizeof err);
    if (!value) return cli_usage("%s", err);
    cJSON *check = cJSON_Parse(value);
    cJSON_Delete(check);
    if (!check) {
      free(value);
      return cli_usage("the %s is not valid JSON", last);
    }
  }
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", op);
  for (int i = 0; i < nfields; i++) cJSON_AddStringToObject(req, fields[i], args[i]);
  if (value) cJSON_AddStringToObject(req, last, value);
  cJSON_AddStringToObject(req, "key", key);
  free(value);
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  const cJSON *sent = cJSON_GetObjectItem(answer, "id");
  printf("%s of %s %s sent as %s%s\n", op, args[0], args[1],
         cJSON_IsString(sent) ? sent->valuestring : "?",
         cJSON_IsTrue(cJSON_GetObjectItem(answer, "repeated"))
             ? " (already, by an earlier request with this --id)" : "");
  cJSON_Delete(answer);
  return CLI_OK;
}

/* start [--id KEY] WORKFLOW ID [JSON] */
int cli_start(const cli_args *a) {
  static const char *const fields[] = {"workflow", "id"};
  return workflows_command(a, 0, "start",
                           "usage: choreo start [--host NAME] [--id KEY] WORKFLOW ID [JSON]",
                           fields, 2, "input", false);
}

/* signal [--id KEY] WORKFLOW ID SIGNAL [JSON] */
int cli_signal(const cli_args *a) {
  static const char *const fields[] = {"workflow", "id", "signal"};
  return workflows_command(a, 0, "signal",
                           "usage: choreo signal [--host NAME] [--id KEY] WORKFLOW ID SIGNAL [JSON]",
                           fields, 3, "data", false);
}

static const char *workflows_str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItem(o, field);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double workflows_num(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItem(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void workflows_print_json(const char *label, const cJSON *v) {
  char *text = v ? cJSON_PrintUnformatted(v) : NULL;
  if (text) printf("%s%s\n", label, text);
  free(text);
}

static void workflows_print_instance(const cJSON *w) {
  const char *status = workflows_str(w, "status");
  const char *detail = strcmp(status, "running") == 0 ? workflows_str(w, "waiting")
                                                       : workflows_str(w, "error");
  printf("%-16s %-20s %-10s %5.0f steps  %s\n", workflows_str(w, "name"), workflows_str(w, "id"),
         status, workflows_num(w, "steps"), detail);
}

/* What came of a step: a message, a timeout, or a recorded value. */
static void workflows_print_outcome(const cJSON *outcome) {
  const cJSON *msg = cJSON_GetObjectItem(outcome, "msg");
  if (cJSON_IsTrue(cJSON_GetObjectItem(outcome, "timeout"))) {
    printf("  -> timed out\n");
  } else if (cJSON_IsObject(msg)) {
    printf("  -> %s %s from %s", workflows_str(msg, "kind"), workflows_str(msg, "type"),
           workflows_str(msg, "source"));
    workflows_print_json(" ", cJSON_GetObjectItem(msg, "data"));
    if (!cJSON_GetObjectItem(msg, "data")) putchar('\n');
  } else if (cJSON_GetObjectItem(outcome, "v")) {
    workflows_print_json("  -> ", cJSON_GetObjectItem(outcome, "v"));
  } else {
    putchar('\n');
  }
}

/* The instance, then its history as a timeline, times relative to its start. */
static void workflows_print_history(const cJSON *w) {
  double started = workflows_num(w, "started_ms");
  printf("%s %s: %s", workflows_str(w, "name"), workflows_str(w, "id"), workflows_str(w, "status"));
  if (workflows_str(w, "waiting")[0]) printf(", waiting in %s", workflows_str(w, "waiting"));
  if (workflows_str(w, "error")[0]) printf(": %s", workflows_str(w, "error"));
  putchar('\n');
  workflows_print_json("input   ", cJSON_GetObjectItem(w, "input"));
  workflows_print_json("result  ", cJSON_GetObjectItem(w, "result"));
  const cJSON *s;
  cJSON_ArrayForEach(s, cJSON_GetObjectItem(w, "history")) {
    printf("%5.0f  +%9.3fs  %-40s", workflows_num(s, "step"),
           (workflows_num(s, "at_ms") - started) / 1000.0, workflows_str(s, "what"));
    const cJSON *outcome = cJSON_GetObjectItem(s, "outcome");
    if (outcome) {
      printf(" +%.3fs", (workflows_num(s, "done_ms") - workflows_num(s, "at_ms")) / 1000.0);
      workflows_print_outcome(outcome);
    } else {
      printf(" waiting\n");
    }
  }
}

static bool workflows_status_known(const char *s) {
  return strcmp(s, "running") == 0 || strcmp(s, "completed") == 0 ||
         strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0 || strcmp(s, "stuck") == 0;
}

/* workflows [--json] list [WORKFLOW] [--status S] | show WORKFLOW ID | cancel WORKFLOW ID
 * [REASON] */
int cli_workflows(const cli_args *a) {
  const char *usage = "usage: choreo workflows [--host NAME] [--json] list [WORKFLOW] "
                      "[--status running|completed|failed|cancelled|stuck] | show WORKFLOW ID | "
                      "cancel WORKFLOW ID [REASON]";
  int first = 0; /* the action, after --json if any (which cancel has no use for) */
  while (first < a->nrest && strcmp(a->rest[first], "--json") == 0) first++;
  if (first < a->nrest && strcmp(a->rest[first], "cancel") == 0) {
    static const char *const fields[] = {"workflow", "id"};
    return workflows_command(a, first + 1, "cancel",
                             "usage: choreo workflows [--host NAME] cancel WORKFLOW ID [REASON]",
                             fields, 2, "reason", true);
  }
  bool json = false;
  const char *words[3] = {NULL, NULL, NULL}, *status = NULL;
  int nwords = 0;
  for (int i = 0; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    if (strcmp(arg, "--json") == 0) {
      json = true;
    } else if (strcmp(arg, "--status") == 0) {
      if (i + 1 >= a->nrest || !workflows_status_known(a->rest[i + 1]))
        return cli_usage("%s", "--status needs one of running, completed, failed, cancelled, stuck");
      status = a->rest[++i];
    } else if (arg[0] == '-' && arg[1] == '-') {
      return cli_usage("unknown option '%s'", arg);
    } else if (nwords == 3) {
      return cli_usage("%s", usage);
    } else {
      words[nwords++] = arg;
    }
  }
  const char *action = nwords ? words[0] : "list";
  bool show = strcmp(action, "show") == 0;
  if ((!show && strcmp(action, "list") != 0) || (show && (nwords != 3 || status)) ||
      (!show && nwords > 2))
    return cli_usage("%s", usage);
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "workflows");
  cJSON_AddStringToObject(req, "action", action);
  if (words[1]) cJSON_AddStringToObject(req, "name", words[1]);
  if (show) cJSON_AddStringToObject(req, "id", words[2]);
  if (status) cJSON_AddStringToObject(req, "status", status);
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  const cJSON *w;
  cJSON_ArrayForEach(w, cJSON_GetObjectItem(answer, "workflows")) {
    if (json) workflows_print_json("", w);
    else if (show) workflows_print_history(w);
    else workflows_print_instance(w);
  }
  cJSON_Delete(answer);
  return CLI_OK;
}
