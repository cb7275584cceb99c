/* Redis Streams peer of the "pipeline" benchmark, written the way a hand-made service would
 * be: a producer process XADDs each event (fields i and payload) in pipelines of 100 commands;
 * the consumer reads with XREADGROUP COUNT 100, commits each batch to SQLite in one
 * transaction and only then XACKs it, so an event counts once it is on the consumer's disk.
 * With --rate, the "latency" benchmark: the producer XADDs each event when its time comes and
 * the same consumer measures each one's time from XADD to the COMMIT that holds it. The
 * redis-server (appendonly yes, appendfsync everysec) is started by the runner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench_latency.h"
#include "bench_producer.h"
#include "bench_report.h"
#include "bench_sink.h"
#include "bench_util.h"

#define BATCH 100
#define GROUP "g"

static const char usage[] =
    "--port P (--events N | --rate EVENTS_PER_S --seconds S) --db FILE [--timeout S]";

typedef struct redis_run {
  int port;
  long events;
  long rate; /* 0: flat out */
  double deadline;
  char stream[96];
} redis_run;

/* Socket timeouts well above BLOCK 1000, so a dead server ends the run instead of hanging it. */
static redisContext *redis_open(int port, char *err, size_t errlen) {
  struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (!c || c->err) {
    snprintf(err, errlen, "cannot connect to redis on 127.0.0.1:%d: %s", port,
             c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, tv);
  return c;
}

static int produce(void *arg, bench_producer_report *r) {
  const redis_run *run = arg;
  redisContext *c = redis_open(run->port, r->error, sizeof r->error);
  if (!c) return -1;
  unsigned char payload[BENCH_PAYLOAD_SIZE];
  char idx[24];
  const char *argv[7] = {"XADD", run->stream, "*", "i", idx, "payload", (const char *)payload};
  size_t lens[7] = {4, strlen(run->stream), 1, 1, 0, 7, BENCH_PAYLOAD_SIZE};
  int rc = 0;
  bench_pace pace;
  bench_pace_start(&pace, run->rate, run->events);
  r->t_first = pace.start;
  long base, n;
  while (rc == 0 && (n = bench_pace_due(&pace, BATCH, &base)) > 0) {
    if (bench_now() > run->deadline) {
      snprintf(r->error, sizeof r->error, "time limit reached after %lld XADDs", r->sent);
      rc = -1;
      break;
    }
    /* One round trip for the events due together: BATCH commands flat out, the pipelining a
     * tuned producer would use; at a fixed rate, one command, or the few a late wakeup made
     * due. */
    for (long i = base; i < base + n; i++) {
      bench_payload_stamped(payload, i, bench_now());
      lens[4] = (size_t)snprintf(idx, sizeof idx, "%ld", i);
      redisAppendCommandArgv(c, 7, argv, lens);
    }
    for (long i = base; i < base + n; i++) {
      redisReply *reply;
      if (redisGetReply(c, (void **)&reply) != REDIS_OK) {
        snprintf(r->error, sizeof r->error, "XADD: %s", c->errstr);
        rc = -1;
        break;
      }
      if (reply->type != REDIS_REPLY_STRING) {
        snprintf(r->error, sizeof r->error, "XADD: %s",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        rc = -1;
      } else {
        r->sent++;
      }
      freeReplyObject(reply);
      if (rc) break;
    }
  }
  r->t_done = bench_now();
  redisFree(c);
  return rc;
}

static redisReply *command_ok(redisContext *c, redisReply *reply, const char *what) {
  if (!reply) bench_fail("%s: %s", what, c->errstr);
  if (reply->type == REDIS_REPLY_ERROR) bench_fail("%s: %s", what, reply->str);
  return reply;
}

static const char *field(const redisReply *fields, const char *name, size_t *len) {
  for (size_t k = 0; k + 1 < fields->elements; k += 2) {
    const redisReply *key = fields->element[k];
    if (key->type == REDIS_REPLY_STRING && strcmp(key->str, name) == 0) {
      *len = fields->element[k + 1]->len;
      return fields->element[k + 1]->str;
    }
  }
  return NULL;
}

/* Stores one XREADGROUP batch in one transaction, then acknowledges it with one XACK. Returns
 * the time of the commit; with `lat`, notes each new event's latency. */
static double consume_batch(redisContext *c, const redis_run *run, bench_sink *sink,
                            bench_seen *seen, bench_latency *lat, const redisReply *entries) {
  if (bench_sink_begin(sink) != 0) bench_fail("BEGIN: %s", bench_sink_error(sink));
  for (size_t k = 0; k < entries->elements; k++) {
    const redisReply *e = entries->element[k];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
      bench_fail("XREADGROUP: unexpected entry shape");
    size_t ilen, plen;
    const char *i = field(e->element[1], "i", &ilen);
    const char *payload = field(e->element[1], "payload", &plen);
    if (!i || !payload) bench_fail("XREADGROUP: entry %s lacks i or payload", e->element[0]->str);
    long index = atol(i);
    if (bench_sink_insert(sink, index, payload, (int)plen) != 0)
      bench_fail("INSERT: %s", bench_sink_error(sink));
    if (bench_seen_add(seen, index) && lat) bench_latency_sent(lat, payload, (int)plen);
  }
  if (bench_sink_commit(sink) != 0) bench_fail("COMMIT: %s", bench_sink_error(sink));
  double t = bench_now();
  if (lat) bench_latency_committed(lat, t);

  const char *argv[3 + BATCH];
  size_t lens[3 + BATCH];
  argv[0] = "XACK";
  argv[1] = run->stream;
  argv[2] = GROUP;
  int argc = 3;
  for (size_t k = 0; k < entries->elements && argc < 3 + BATCH; k++, argc++) {
    argv[argc] = entries->element[k]->element[0]->str;
    lens[argc] = entries->element[k]->element[0]->len;
  }
  lens[0] = 4;
  lens[1] = strlen(run->stream);
  lens[2] = strlen(GROUP);
  freeReplyObject(command_ok(c, redisCommandArgv(c, argc, argv, lens), "XACK"));
  return t;
}

/* The stream holds every payload in the server's memory: whether the run succeeds or fails
 * (bench_fail exits), it goes. A connection of its own, since a failure may have left the
 * consumer's connection in the middle of a reply. */
static const redis_run *stream_to_drop;

static void drop_stream(void) {
  if (!stream_to_drop) return;
  char err[200];
  redisContext *c = redis_open(stream_to_drop->port, err, sizeof err);
  if (c) {
    freeReplyObject(redisCommand(c, "DEL %s", stream_to_drop->stream));
    redisFree(c);
  }
  stream_to_drop = NULL;
}

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv,
                   BENCH_ARG_PORT | BENCH_ARG_EVENTS | BENCH_ARG_RATE | BENCH_ARG_DB, usage);
  bench_watchdog(a.timeout_s + 15);

  redis_run run = {
      .port = a.port, .events = a.events, .rate = a.rate, .deadline = bench_now() + a.timeout_s};
  /* A fresh stream per run: a rerun never sees an earlier run's entries or group. */
  snprintf(run.stream, sizeof run.stream, "choreo-bench:%ld:%.0f", (long)getpid(),
           bench_now() * 1e6);

  bench_sink sink;
  if (bench_sink_open(&sink, a.db) != 0) bench_fail("%s: %s", a.db, bench_sink_error(&sink));
  /* Registered before the fork so that, exit handlers running in reverse, a failed run kills
   * the producer first: a live producer could re-create the stream just dropped. */
  atexit(drop_stream);
  bench_producer producer;
  if (bench_producer_fork(&producer, produce, &run, a.timeout_s) != 0)
    bench_fail("cannot start the producer process");

  char err[200];
  redisContext *c = redis_open(a.port, err, sizeof err);
  if (!c) bench_fail("%s", err);
  /* "0", not "$": the group must see every entry, however early the producer starts. */
  freeReplyObject(command_ok(
      c, redisCommand(c, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", run.stream), "XGROUP CREATE"));
  stream_to_drop = &run;

  bench_seen seen;
  bench_seen_init(&seen, a.events);
  bench_latency latency;
  bench_latency *lat = a.rate ? &latency : NULL;
  if (lat) bench_latency_init(lat, a.events);
  double cpu0 = bench_cpu_process();
  if (bench_producer_go(&producer) != 0) bench_fail("cannot start the producer");
  double t_last = 0;
  while (seen.distinct < a.events) {
    if (bench_now() > run.deadline)
      bench_fail("time limit of %d s reached with %ld of %ld events committed", a.timeout_s,
                 seen.distinct, a.events);
    /* BLOCK returns as soon as an entry arrives, with up to BATCH of them: the second only
     * bounds an idle wait. */
    redisReply *reply = command_ok(
        c,
        redisCommand(c, "XREADGROUP GROUP " GROUP " c COUNT %d BLOCK 1000 STREAMS %s >", BATCH,
                     run.stream),
        "XREADGROUP");
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
      t_last = consume_batch(c, &run, &sink, &seen, lat, reply->element[0]->element[1]);
    else if (reply->type != REDIS_REPLY_NIL)
      bench_fail("XREADGROUP: unexpected reply type %d", reply->type);
    freeReplyObject(reply);
  }
  double cpu = bench_cpu_process() - cpu0;

  if (lat)
    bench_latency_report(&producer, &sink, a.events, lat, run.deadline);
  else
    bench_pipeline_report(&producer, &sink, a.events, cpu, t_last, run.deadline);
  drop_stream();
  redisFree(c);
  if (lat) bench_latency_free(lat);
  bench_seen_free(&seen);
  bench_sink_close(&sink);
  return 0;
}
