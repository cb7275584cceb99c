/* Redis Streams peer of the "pipeline" benchmark, written the way a hand-made service would
 * be: a producer process XADDs each event (fields i and payload) in pipelines of 100 commands;
 * the consumer reads with XREADGROUP COUNT 100, commits each batch to SQLite in one
 * transaction and only then XACKs it, so an event counts once it is on the consumer's disk.
 * With --rate, the "latency" benchmark: the producer XADDs each event when its time comes and
 * the same consumer measures each one's time from XADD to the XREADGROUP that brings it, as
 * choreo's is measured to its handler's first line (bench_tally.h). With
 * --restart-every as well, the "restart" benchmark (bench_restart.h): the consumer is a process
 * of its own, replaced as on a deploy; each new one resumes the same group as the same consumer
 * name. The redis-server (appendonly yes, appendfsync everysec) is started by the runner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench_latency.h"
#include "bench_producer.h"
#include "bench_report.h"
#include "bench_restart.h"
#include "bench_sink.h"
#include "bench_tally.h"
#include "bench_util.h"

#define BATCH 100
#define GROUP "g"
#define CONSUMER "c"

_Static_assert(BATCH <= BENCH_TALLY_BATCH, "a batch is one transaction of the account");

static const char usage[] = "--port P (--events N | --rate EVENTS_PER_S --seconds S"
                            " [--restart-every MS]) --db FILE [--payload BYTES] [--pause-ms MS]"
                            " [--timeout S]";

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
  unsigned char payload[BENCH_PAYLOAD_MAX];
  char idx[24];
  const char *argv[7] = {"XADD", run->stream, "*", "i", idx, "payload", (const char *)payload};
  size_t lens[7] = {4, strlen(run->stream), 1, 1, 0, 7, bench_payload_size};
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

/* Stores one XREADGROUP batch in one transaction, notes it in the account, then acknowledges
 * it with one XACK. */
static void consume_batch(redisContext *c, const redis_run *run, bench_sink *sink,
                          bench_tally *tally, const redisReply *entries) {
  double received = bench_now();
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
    bench_tally_stored(tally, index, payload, (int)plen, received);
  }
  if (bench_sink_commit(sink) != 0) bench_fail("COMMIT: %s", bench_sink_error(sink));
  bench_tally_committed(tally, bench_now());

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
}

/* Reads a batch as the group's consumer and stores it: with `from` ">", entries never
 * delivered, waiting for some a second at most; with "0", those delivered to this consumer name
 * but never acknowledged. Returns how many there were. */
static size_t read_batch(redisContext *c, const redis_run *run, bench_sink *sink,
                         bench_tally *tally, const char *from) {
  /* BLOCK returns as soon as an entry arrives, with up to BATCH of them: the second only
   * bounds an idle wait. */
  redisReply *reply = command_ok(
      c,
      redisCommand(c, "XREADGROUP GROUP " GROUP " " CONSUMER " COUNT %d BLOCK 1000 STREAMS %s %s",
                   BATCH, run->stream, from),
      "XREADGROUP");
  size_t n = 0;
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
      reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
    const redisReply *entries = reply->element[0]->element[1];
    n = entries->elements;
    if (n > 0) consume_batch(c, run, sink, tally, entries); /* "0" answers none with [] */
  } else if (reply->type != REDIS_REPLY_NIL) {
    bench_fail("XREADGROUP: unexpected reply type %d", reply->type);
  }
  freeReplyObject(reply);
  return n;
}

typedef struct redis_reader {
  redisContext *c;
  const redis_run *run;
} redis_reader;

/* bench_consume's batch: entries never delivered before. */
static void read_new(void *ud, bench_sink *sink, bench_tally *tally) {
  redis_reader *r = ud;
  read_batch(r->c, r->run, sink, tally, ">");
}

/* One consumer process of the restart workload, until its supervisor asks it to stop. */
static int consumer_process(const bench_args *a, const redis_run *run) {
  bench_tally tally;
  bench_restart_consumer(&tally);
  bench_sink sink;
  if (bench_sink_attach(&sink, a->db) != 0) bench_fail("%s: %s", a->db, bench_sink_error(&sink));
  char err[200];
  redisContext *c = redis_open(run->port, err, sizeof err);
  if (!c) bench_fail("%s", err);
  bench_tally_ready(&tally);
  /* First what a predecessor read and never acknowledged: none after a graceful stop, but a
   * consumer that was killed leaves its entries with its consumer name, which is ours. */
  while (read_batch(c, run, &sink, &tally, "0") > 0) {
  }
  while (!bench_restart_stopping()) read_batch(c, run, &sink, &tally, ">");
  redisFree(c);
  bench_sink_close(&sink);
  return 0;
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
                   BENCH_ARG_PORT | BENCH_ARG_EVENTS | BENCH_ARG_RATE | BENCH_ARG_RESTART |
                       BENCH_ARG_DB | BENCH_ARG_PAUSE,
                   usage);
  bench_watchdog(a.timeout_s + 15);

  redis_run run = {
      .port = a.port, .events = a.events, .rate = a.rate, .deadline = bench_now() + a.timeout_s};
  /* A fresh stream per run: a rerun never sees an earlier run's entries or group. */
  char name[64];
  bench_run_name(name, sizeof name, &a);
  snprintf(run.stream, sizeof run.stream, "choreo-bench:%s", name);
  if (a.consumer_of) return consumer_process(&a, &run);

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

  bench_tally tally;
  bench_tally_init(&tally, a.events, a.rate > 0);
  if (a.restart_ms) {
    bench_consume_restarting(argv, name, &a, &producer, &sink, &tally, run.deadline);
  } else {
    redis_reader reader = {c, &run};
    bench_consume(&a, &producer, &sink, &tally, run.deadline, read_new, &reader);
  }
  drop_stream();
  redisFree(c);
  bench_tally_free(&tally);
  bench_sink_close(&sink);
  return 0;
}
