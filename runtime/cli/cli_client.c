/* The subcommands that talk to a running host over its control socket: publish, send, status,
 * dead, sagas, stream and query. Each sends one JSON request (see control.c) and prints the answer for people. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "bus_close.h"
#include "cli.h"
#include "json.h"
#include "tracecontext.h"

#define ANSWER_WAIT_MS 10000

typedef struct client_hosts {
  int found;
  char first[CHOREO_NAME_MAX + 1];
  char names[512]; /* "a, b, c" for the error message */
} client_hosts;

static void client_found(void *ud, const char *name) {
  client_hosts *hs = ud;
  if (hs->found++ == 0) snprintf(hs->first, sizeof hs->first, "%s", name);
  size_t used = strlen(hs->names);
  snprintf(hs->names + used, sizeof hs->names - used, "%s%s", used ? ", " : "", name);
}

/* Finds the host to talk to: --host, or the only one on the bus. */
static int client_pick_host(const cli_args *a, char *bus, size_t bussize, char *name,
                            size_t namesize) {
  char err[PATH_MAX + 64];
  if (choreo_bus_dir(a->bus, false, bus, bussize, err, sizeof err)) return cli_fail("%s", err);
  if (a->host) {
    if (!choreo_name_valid(a->host)) return cli_usage("invalid host name '%s'", a->host);
    snprintf(name, namesize, "%s", a->host);
    return CLI_OK;
  }
  client_hosts hs = {0};
  if (choreo_bus_each_host(bus, "ctl", client_found, &hs))
    return cli_fail("cannot read the bus directory %s", bus);
  snprintf(name, namesize, "%s", hs.first);
  const char *names = hs.names;
  int found = hs.found;
  if (found == 1) return CLI_OK;
  if (found == 0) return cli_fail("no host is running on bus %s", bus);
  fprintf(stderr, "choreo: several hosts on bus %s (%s): pick one with --host\n", bus, names);
  return CLI_USAGE;
}

/* One REQ/REP exchange of `len` bytes with url; the reply's JSON, which must say "ok": true.
 * Codes as cli_ask's. */
static int client_exchange(const char *url, const void *request, size_t len, int wait_ms,
                           bool wait_dial, const char *who, cJSON **answer, char *err,
                           size_t errlen) {
  nng_socket s;
  char *reply = NULL;
  size_t got = 0;
  int rv = nng_req0_open(&s);
  if (rv) {
    snprintf(err, errlen, "%s", nng_strerror(rv));
    return CLI_FAIL;
  }
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, wait_ms);
  nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, wait_ms);
  nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 64u << 20);
  if (nng_dial(s, url, NULL, wait_dial ? 0 : NNG_FLAG_NONBLOCK)) {
    choreo_bus_close(s);
    snprintf(err, errlen, "%s is not running", who);
    return CLI_USAGE;
  }
  rv = nng_send(s, (void *)request, len, 0);
  if (!rv) rv = nng_recv(s, &reply, &got, NNG_FLAG_ALLOC);
  choreo_bus_close(s);
  if (rv) {
    snprintf(err, errlen, "host did not answer: %s", nng_strerror(rv));
    return CLI_UNANSWERED;
  }
  *answer = cJSON_ParseWithLength(reply, got);
  nng_free(reply, got);
  if (!*answer) {
    snprintf(err, errlen, "host sent an unreadable answer");
    return CLI_FAIL;
  }
  if (!cJSON_IsTrue(cJSON_GetObjectItem(*answer, "ok"))) {
    const cJSON *e = cJSON_GetObjectItem(*answer, "error");
    snprintf(err, errlen, "%s", cJSON_IsString(e) ? e->valuestring : "request failed");
    cJSON_Delete(*answer);
    *answer = NULL;
    return CLI_FAIL;
  }
  return CLI_OK;
}

int cli_ask(const char *bus, const char *name, const char *text, int wait_ms, bool wait_dial,
            cJSON **answer, char *err, size_t errlen) {
  char url[PATH_MAX + 64], who[CHOREO_NAME_MAX + 64];
  choreo_bus_ipc_url(url, sizeof url, bus, name, "ctl");
  *answer = NULL;
  snprintf(who, sizeof who, "no host named '%s'", name);
  struct stat st;
  if (!wait_dial && stat(url + strlen("ipc://"), &st) != 0) { /* no socket: nothing to wait for */
    snprintf(err, errlen, "no host named '%s' is running on this bus", name);
    return CLI_USAGE;
  }
  int rc = client_exchange(url, text, strlen(text) + 1, wait_ms, wait_dial, who, answer, err, errlen);
  if (rc == CLI_USAGE) snprintf(err, errlen, "no host named '%s' is running on this bus", name);
  return rc;
}

int cli_ask_peer(const char *pub_url, const char *text, int wait_ms, cJSON **answer, char *err,
                 size_t errlen) {
  char rep[PATH_MAX + 64];
  *answer = NULL;
  if (choreo_bus_rep_url(pub_url, rep, sizeof rep)) {
    snprintf(err, errlen, "--peer %s: expected tcp://HOST:PORT (as the host's --listen)", pub_url);
    return CLI_USAGE;
  }
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  int rc = choreo_ask_encode(&sb, text) ? CLI_FAIL
           : client_exchange(rep, sb.data, sb.size, wait_ms, false, pub_url, answer, err, errlen);
  msgpack_sbuffer_destroy(&sb);
  return rc;
}

/* Sends one request; on success *answer is the parsed answer with "ok": true. A request with a
 * key (an append) whose answer never came may or may not have been carried out: say so. */
int cli_request(const cli_args *a, cJSON *request, cJSON **answer) {
  const cJSON *k = cJSON_GetObjectItem(request, "key");
  char key[256] = "";
  if (cJSON_IsString(k)) snprintf(key, sizeof key, "%s", k->valuestring);
  char bus[PATH_MAX], name[CHOREO_NAME_MAX + 1], err[512];
  int rc = client_pick_host(a, bus, sizeof bus, name, sizeof name);
  char *text = rc ? NULL : cJSON_PrintUnformatted(request);
  cJSON_Delete(request);
  if (rc) return rc;
  if (!text) return cli_fail("%s", "out of memory");
  rc = cli_ask(bus, name, text, ANSWER_WAIT_MS, true, answer, err, sizeof err);
  free(text);
  if (rc == CLI_UNANSWERED && key[0]) {
    fprintf(stderr, "choreo: %s: the outcome is unknown; the same command with --id %s appends "
                    "at most once\n", err, key);
    return CLI_FAIL;
  }
  return rc ? cli_fail("%s", err) : CLI_OK;
}

/* publish TYPE [JSON] / send TO TYPE [JSON] */
#define CLIENT_JSON_MAX (16u << 20) /* what the control socket takes in one request */

/* The JSON argument: the text itself, "-" for stdin, or "@FILE" (an argument list holds only
 * so much). *json is malloc'd; NULL with a message in err on failure. */
char *cli_read_json(const char *arg, char *err, size_t errlen) {
  if (strcmp(arg, "-") != 0 && arg[0] != '@') return strdup(arg);
  FILE *f = strcmp(arg, "-") == 0 ? stdin : fopen(arg + 1, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", arg + 1, strerror(errno));
    return NULL;
  }
  char *text = malloc(CLIENT_JSON_MAX + 1);
  size_t n = text ? fread(text, 1, CLIENT_JSON_MAX + 1, f) : 0;
  bool failed = !text || ferror(f);
  if (f != stdin) fclose(f);
  if (failed || n > CLIENT_JSON_MAX) {
    snprintf(err, errlen, "%s", failed ? "cannot read the JSON input" : "JSON input over 16 MiB");
    free(text);
    return NULL;
  }
  text[n] = '\0';
  return text;
}

/* A key for an append the user gave none: NNG resends a request whose answer is late, perhaps
 * to a restarted host, which must not append it twice. */
void cli_new_key(char *out, size_t size) {
  unsigned char bytes[16] = {0};
  if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
    struct timespec ts; /* no entropy to be had: time and pid are unique enough here */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "cli-%lld-%ld-%d", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid());
    return;
  }
  size_t n = (size_t)snprintf(out, size, "cli-");
  for (size_t i = 0; i < sizeof bytes && n + 2 < size; i++)
    n += (size_t)snprintf(out + n, size - n, "%02x", bytes[i]);
}

/* --expect N: a stream version, 0 (the stream must not exist yet) or more. */
static int client_expect(const char *text, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || *end || text[0] < '0' || text[0] > '9')
    return cli_usage("--expect needs a stream version (0 or more), got '%s'", text);
  *out = v;
  return CLI_OK;
}

static int client_emit(const cli_args *a, const char *op, int positional) {
  const char *usage =
      positional == 1
          ? "usage: choreo publish [--host NAME] [--id KEY] [--subject S] [--traceparent TP] TYPE [JSON]"
          : "usage: choreo send [--host NAME] [--id KEY] [--subject S] [--traceparent TP] [--expect N] TO TYPE [JSON]";
  const char *args[3], *id = NULL, *subject = NULL, *traceparent = NULL;
  long long expect = -1;
  int nargs = 0;
  for (int i = 0; i < a->nrest; i++) {
    const char *arg = a->rest[i];
    bool valued = strcmp(arg, "--id") == 0 || strcmp(arg, "--subject") == 0 ||
                  strcmp(arg, "--traceparent") == 0 ||
                  (positional == 2 && strcmp(arg, "--expect") == 0);
    if (valued && i + 1 >= a->nrest) return cli_usage("%s needs a value", arg);
    if (strcmp(arg, "--id") == 0) {
      if (!a->rest[i + 1][0] || strlen(a->rest[i + 1]) > 200)
        return cli_usage("%s", "--id needs a key of 1 to 200 bytes");
      id = a->rest[++i];
    } else if (strcmp(arg, "--subject") == 0) {
      subject = a->rest[++i];
      if (!subject[0]) return cli_usage("%s", "--subject needs a non-empty value");
    } else if (strcmp(arg, "--traceparent") == 0) {
      traceparent = a->rest[++i];
      choreo_trace_context trace;
      if (!choreo_traceparent_parse((choreo_str){traceparent, strlen(traceparent)}, &trace))
        return cli_usage("--%s", CHOREO_TRACEPARENT_EXPECTED);
    } else if (valued) { /* --expect */
      if (client_expect(a->rest[++i], &expect)) return CLI_USAGE;
    } else if (arg[0] == '-' && arg[1] == '-') {
      return cli_usage("unknown option '%s'", arg);
    } else if (nargs == positional + 1) {
      return cli_usage("%s", usage);
    } else {
      args[nargs++] = arg;
    }
  }
  if (nargs < positional) return cli_usage("%s", usage);
  char key[256];
  if (id) snprintf(key, sizeof key, "%s", id);
  else cli_new_key(key, sizeof key);
  char *json = NULL, err[256];
  if (nargs > positional) {
    json = cli_read_json(args[positional], err, sizeof err);
    if (!json) return cli_usage("%s", err);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int bad = choreo_json_to_msgpack(json, &sb, err, sizeof err);
    msgpack_sbuffer_destroy(&sb);
    if (bad) {
      free(json);
      return cli_usage("%s", err);
    }
  }
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", op);
  if (positional == 2) cJSON_AddStringToObject(req, "to", args[0]);
  cJSON_AddStringToObject(req, "type", args[positional - 1]);
  if (json) cJSON_AddStringToObject(req, "data", json);
  if (subject) cJSON_AddStringToObject(req, "subject", subject);
  if (traceparent) cJSON_AddStringToObject(req, "traceparent", traceparent);
  if (expect >= 0) cJSON_AddNumberToObject(req, "expect", (double)expect);
  cJSON_AddStringToObject(req, "key", key);
  free(json);
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  const cJSON *seq_id = cJSON_GetObjectItem(answer, "id");
  if (!cJSON_IsString(seq_id)) {
    cJSON_Delete(answer);
    return cli_fail("%s", "the host's answer carries no id");
  }
  const cJSON *known = cJSON_GetObjectItem(answer, "to_known");
  if (cJSON_IsFalse(known))
    fprintf(stderr, "choreo: warning: no host named '%s' is on the bus or among this host's "
                    "peers; the command waits in the log until it fetches it\n", args[0]);
  printf("%s %s%s\n", strcmp(op, "send") == 0 ? "sent" : "published",
         seq_id->valuestring,
         cJSON_IsTrue(cJSON_GetObjectItem(answer, "repeated"))
             ? " (already, by an earlier request with this --id: nothing appended)" : "");
  cJSON_Delete(answer);
  return CLI_OK;
}

int cli_publish(const cli_args *a) { return client_emit(a, "publish", 1); }
int cli_send(const cli_args *a) { return client_emit(a, "send", 2); }

static double client_num(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItem(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *client_str(const cJSON *o, const char *field) {
  const cJSON *v = cJSON_GetObjectItem(o, field);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void client_print_projection(const cJSON *p, bool detail);

int cli_status(const cli_args *a) {
  bool json = a->nrest == 1 && strcmp(a->rest[0], "--json") == 0;
  if (a->nrest && !json) return cli_usage("status takes only --json, got '%s'", a->rest[0]);
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "status");
  cJSON *s;
  int rc = cli_request(a, req, &s);
  if (rc) return rc;
  if (json) { /* for scripts: the control socket's answer as it came */
    char *text = cJSON_PrintUnformatted(s);
    if (text) puts(text);
    free(text);
    cJSON_Delete(s);
    return text ? CLI_OK : cli_fail("%s", "out of memory");
  }
  const char *reload = client_str(s, "reload_error");
  printf("host          %s\nversion       %s\nscripts       %s\ngeneration    %.0f\n"
         "reload error  %s\nlog head      %.0f\nown applied   %.0f\ndead letters  %.0f\n"
         "bad frames    %.0f\n",
         client_str(s, "name"), client_str(s, "version"), client_str(s, "dir"),
         client_num(s, "generation"), reload[0] ? reload : "none", client_num(s, "head"),
         client_num(s, "own_checkpoint"), client_num(s, "dead_letters"),
         client_num(s, "bad_frames"));
  printf("log kept      from seq %.0f (database %.1f MiB, WAL %.1f MiB)\n"
         "retries       %.0f pending\n"
         "timeouts      %.0f pending\nsagas         %.0f running\n"
         "workflows     %.0f running, %.0f stuck\nuptime        %.0f s\n"
         "handled       %.0f (%.1f per second over the last minute)\n"
         "subscribers   %.0f connected\n",
         client_num(s, "oldest"), client_num(s, "db_bytes") / (1024.0 * 1024.0),
         client_num(s, "wal_bytes") / (1024.0 * 1024.0),
         client_num(s, "retries_pending"), client_num(s, "timeouts_pending"),
         client_num(s, "sagas_running"), client_num(s, "workflows_running"),
         client_num(s, "workflows_stuck"), client_num(s, "uptime_s"), client_num(s, "handled"),
         client_num(s, "handled_per_s"), client_num(s, "subscribers"));
  const cJSON *u;
  cJSON_ArrayForEach(u, cJSON_GetObjectItem(s, "unhandled"))
    printf("unhandled     %s: %.0f (no handler took them)\n", client_str(u, "type"),
           client_num(u, "count"));
  if (client_num(s, "unhandled_other") > 0)
    printf("unhandled     other types: %.0f\n", client_num(s, "unhandled_other"));
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(s, "peers")) {
    double heard = client_num(p, "heard_ms_ago");
    char when[48];
    if (heard < 0) snprintf(when, sizeof when, "never heard from");
    else snprintf(when, sizeof when, "last heard %.1f s ago", heard / 1000);
    char gone[128] = "";
    if (client_num(p, "gone") > 0)
      snprintf(gone, sizeof gone, ", %.0f gone before we got them (last: %.0f to %.0f)",
               client_num(p, "gone"), client_num(p, "gone_first"), client_num(p, "gone_last"));
    printf("peer          %-16s applied %.0f of %.0f (%.0f caught up by FETCH in %.0f "
           "answers), lag %.0f (%s); %s, %s%s\n",
           client_str(p, "name")[0] ? client_str(p, "name") : "?", client_num(p, "checkpoint"),
           client_num(p, "head"), client_num(p, "fetched"), client_num(p, "fetches"),
           client_num(p, "lag"),
           client_str(p, "url"),
           cJSON_IsTrue(cJSON_GetObjectItem(p, "up")) ? "up" : "down", when, gone);
  }
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(s, "projections")) {
    printf("projection    ");
    client_print_projection(p, false);
  }
  cJSON_Delete(s);
  return CLI_OK;
}

/* dead show ID: everything stored of one dead letter, the message and traceback included. */
static int client_dead_show(const cJSON *answer, long long id) {
  const cJSON *d;
  cJSON_ArrayForEach(d, cJSON_GetObjectItem(answer, "dead_letters")) {
    if ((long long)client_num(d, "id") != id) continue;
    char *message = cJSON_Print(cJSON_GetObjectItem(d, "message"));
    printf("id         %.0f\ntype       %s\nfrom       %s/%.0f\nattempts   %.0f\ntime       %s\n"
           "sent back  %.0f times%s\nerror      %s\nmessage    %s\n%s\n",
           client_num(d, "id"), client_str(d, "type"), client_str(d, "source"),
           client_num(d, "seq"), client_num(d, "attempts"), client_str(d, "time"),
           client_num(d, "revived"),
           cJSON_IsTrue(cJSON_GetObjectItem(d, "retrying")) ? ", being retried now" : "",
           client_str(d, "error"), message ? message : "null", client_str(d, "traceback"));
    free(message);
    return CLI_OK;
  }
  char text[32];
  snprintf(text, sizeof text, "%lld", id);
  return cli_fail("no dead letter with id %s", text);
}

int cli_dead(const cli_args *a) {
  const char *action = a->nrest ? a->rest[0] : "";
  bool list = strcmp(action, "list") == 0, show = strcmp(action, "show") == 0;
  if (!(list && a->nrest == 1) &&
      !((strcmp(action, "retry") == 0 || strcmp(action, "drop") == 0 || show) && a->nrest == 2))
    return cli_usage("%s", "usage: choreo dead [--host NAME] list|show ID|retry ID|drop ID");
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "dead");
  cJSON_AddStringToObject(req, "action", show ? "list" : action);
  long long id = 0;
  if (!list) {
    char *end;
    errno = 0;
    id = strtoll(a->rest[1], &end, 10);
    if (*end || id <= 0 || errno || id > (1LL << 53)) {
      cJSON_Delete(req);
      return cli_usage("dead letter id must be a positive integer, got '%s'", a->rest[1]);
    }
    if (!show) cJSON_AddNumberToObject(req, "id", (double)id);
  }
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  if (show) {
    rc = client_dead_show(answer, id);
  } else if (list) {
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(answer, "dead_letters")) {
      printf("%.0f  %s  from %s/%.0f  %s %.0f attempts: %s\n", client_num(d, "id"),
             client_str(d, "type"), client_str(d, "source"), client_num(d, "seq"),
             cJSON_IsTrue(cJSON_GetObjectItem(d, "retrying")) ? "being retried, died after"
                                                               : "after",
             client_num(d, "attempts"), client_str(d, "error"));
    }
  } else {
    printf("%s %s\n", strcmp(action, "retry") == 0 ? "retrying" : "dropped", a->rest[1]);
  }
  cJSON_Delete(answer);
  return rc;
}

/* sagas list [NAME] | sagas show NAME KEY */
int cli_sagas(const cli_args *a) {
  const char *action = a->nrest ? a->rest[0] : "";
  bool show = strcmp(action, "show") == 0;
  if (!((strcmp(action, "list") == 0 && a->nrest <= 2) || (show && a->nrest == 3)))
    return cli_usage("%s", "usage: choreo sagas [--host NAME] list [SAGA] | show SAGA KEY");
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "sagas");
  cJSON_AddStringToObject(req, "action", action);
  if (a->nrest > 1) cJSON_AddStringToObject(req, "name", a->rest[1]);
  if (show) cJSON_AddStringToObject(req, "key", a->rest[2]);
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  const cJSON *item;
  cJSON_ArrayForEach(item, cJSON_GetObjectItem(answer, "sagas")) {
    if (show) {
      char *state = cJSON_Print(cJSON_GetObjectItem(item, "state"));
      printf("saga     %s\nkey      %s\nversion  %.0f\nupdated  %s\nstate    %s\n",
             client_str(item, "name"), client_str(item, "key"), client_num(item, "version"),
             client_str(item, "updated"), state ? state : "?");
      free(state);
    } else {
      printf("%s  %s  (version %.0f, updated %s)\n", client_str(item, "name"),
             client_str(item, "key"), client_num(item, "version"), client_str(item, "updated"));
    }
  }
  cJSON_Delete(answer);
  return CLI_OK;
}

/* One line of a stream for people: version, time of day, type, schema and the data. */
static void client_print_event_text(const cJSON *event) {
  const char *time = client_str(event, "time");
  const char *clock = strchr(time, 'T') ? strchr(time, 'T') + 1 : time;
  const cJSON *data = cJSON_GetObjectItem(event, "data");
  if (!data) data = cJSON_GetObjectItem(event, "data_base64");
  char *json = data ? cJSON_PrintUnformatted(data) : NULL;
  printf("%6.0f  %.15s  %s (%s)  %s\n", client_num(event, "streamversion"), clock,
         client_str(event, "type"), client_str(event, "dataschema"), json ? json : "");
  free(json);
}

/* stream [--format json|text] STREAM: every event of an event-sourced stream, one CloudEvents
 * JSON line (or one line of text) each, read a page at a time. */
int cli_stream(const cli_args *a) {
  const char *usage = "usage: choreo stream [--host NAME] [--format json|text] STREAM";
  const char *stream = NULL;
  bool text = false;
  for (int i = 0; i < a->nrest; i++) {
    if (strcmp(a->rest[i], "--format") == 0) {
      const char *f = i + 1 < a->nrest ? a->rest[++i] : "";
      if (strcmp(f, "json") && strcmp(f, "text")) return cli_usage("%s", "--format is json or text");
      text = strcmp(f, "text") == 0;
    } else if (a->rest[i][0] == '-' && a->rest[i][1] == '-') {
      return cli_usage("unknown option '%s'", a->rest[i]);
    } else if (stream || !a->rest[i][0]) {
      return cli_usage("%s", usage);
    } else {
      stream = a->rest[i];
    }
  }
  if (!stream) return cli_usage("%s", usage);
  double after = 0;
  bool more = true;
  while (more) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "stream");
    cJSON_AddStringToObject(req, "stream", stream);
    cJSON_AddNumberToObject(req, "after", after);
    cJSON *answer;
    int rc = cli_request(a, req, &answer);
    if (rc) return rc;
    if (after == 0 && client_num(answer, "version") == 0) {
      cJSON_Delete(answer);
      return cli_fail("no stream named '%s' (it has no events)", stream);
    }
    const cJSON *event;
    cJSON_ArrayForEach(event, cJSON_GetObjectItem(answer, "events")) {
      if (text) {
        client_print_event_text(event);
      } else {
        char *line = cJSON_PrintUnformatted(event);
        if (line) puts(line);
        free(line);
      }
      after = client_num(event, "streamversion");
    }
    more = cJSON_IsTrue(cJSON_GetObjectItem(answer, "more"));
    cJSON_Delete(answer);
  }
  return CLI_OK;
}

/* query NAME [JSON]: runs a query the host's scripts declared and prints its answer as JSON. */
int cli_query(const cli_args *a) {
  if (a->nrest < 1 || a->nrest > 2 || !a->rest[0][0])
    return cli_usage("%s", "usage: choreo query [--host NAME] QUERY [JSON | - | @FILE]");
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "query");
  cJSON_AddStringToObject(req, "name", a->rest[0]);
  if (a->nrest == 2) {
    char err[256];
    char *text = cli_read_json(a->rest[1], err, sizeof err);
    bool read = text != NULL;
    cJSON *args = read ? cJSON_Parse(text) : NULL;
    free(text);
    if (!args) {
      cJSON_Delete(req);
      return cli_usage("%s", read ? "the arguments are not JSON" : err);
    }
    cJSON_AddItemToObject(req, "args", args);
  }
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  char *out = cJSON_PrintUnformatted(cJSON_GetObjectItem(answer, "result"));
  if (out) puts(out);
  free(out);
  cJSON_Delete(answer);
  return out ? CLI_OK : cli_fail("%s", "out of memory");
}

/* One projection for people: its live version and tables, and its build if one is under way. */
static void client_print_projection(const cJSON *p, bool detail) {
  double declared = client_num(p, "version"), live = client_num(p, "live");
  printf("%s  ", client_str(p, "name"));
  if (declared == 0) printf("no longer declared by the scripts (its tables stay; declared again, it is built afresh)");
  else if (live == declared) printf("v%.0f live", live);
  else if (live == 0) printf("v%.0f declared, no live tables", declared);
  else printf("v%.0f declared, v%.0f live", declared, live);
  const cJSON *build = cJSON_GetObjectItem(p, "build");
  const char *error = build ? client_str(build, "error") : "";
  if (build && error[0])
    printf(", build of v%.0f stopped: %s", client_num(build, "version"), error);
  else if (build)
    printf(", building v%.0f: %.0f events done, %.0f to go (%.0f/s)",
           client_num(build, "version"), client_num(build, "applied"),
           client_num(build, "remaining"), client_num(build, "rate"));
  if (build && client_str(build, "history")[0]) printf(" (%s)", client_str(build, "history"));
  putchar('\n');
  if (!detail) return;
  printf("  tables:");
  const cJSON *t;
  cJSON_ArrayForEach(t, cJSON_GetObjectItem(p, "tables")) printf(" %s", t->valuestring);
  putchar('\n');
}

/* projections [--json] list | status [NAME] | rebuild NAME */
int cli_projections(const cli_args *a) {
  const char *usage =
      "usage: choreo projections [--host NAME] [--json] list | status [PROJECTION] | rebuild PROJECTION";
  bool json = false;
  const char *words[2] = {NULL, NULL};
  int nwords = 0;
  for (int i = 0; i < a->nrest; i++) {
    if (strcmp(a->rest[i], "--json") == 0) json = true;
    else if (a->rest[i][0] == '-' && a->rest[i][1] == '-') return cli_usage("unknown option '%s'", a->rest[i]);
    else if (nwords == 2) return cli_usage("%s", usage);
    else words[nwords++] = a->rest[i];
  }
  const char *action = nwords ? words[0] : "list";
  const char *name = words[1];
  bool rebuild = strcmp(action, "rebuild") == 0, status = strcmp(action, "status") == 0;
  if ((!rebuild && !status && strcmp(action, "list")) || (rebuild && !name) ||
      (!rebuild && !status && name))
    return cli_usage("%s", usage);
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "op", "projections");
  cJSON_AddStringToObject(req, "action", rebuild ? "rebuild" : "list");
  if (rebuild) cJSON_AddStringToObject(req, "name", name);
  cJSON *answer;
  int rc = cli_request(a, req, &answer);
  if (rc) return rc;
  const cJSON *list = cJSON_GetObjectItem(answer, "projections"), *p;
  bool found = !name;
  cJSON_ArrayForEach(p, list) {
    if (name && strcmp(client_str(p, "name"), name)) continue;
    found = true;
    if (json) {
      char *line = cJSON_PrintUnformatted(p);
      if (line) puts(line);
      free(line);
    } else {
      client_print_projection(p, status);
    }
  }
  cJSON_Delete(answer);
  if (!found) return cli_fail("no projection named '%s'", name);
  return CLI_OK;
}
