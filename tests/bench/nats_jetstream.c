/* NATS JetStream peer of the "pipeline" benchmark, written the way a hand-made service would
 * be: a file-storage stream, a producer process publishing asynchronously with at most 4096
 * publishes awaiting their acks, and a durable pull consumer (AckExplicit) that fetches 100
 * messages, commits them to SQLite in one transaction and only then acks each one, so an event
 * counts once it is on the consumer's disk. With --rate, the "latency" benchmark: the producer
 * publishes each event when its time comes and the same consumer measures each one's time from
 * publish to the fetch that brings it, as choreo's is measured to its handler's first line
 * (bench_tally.h). With --restart-every as well, the "restart" benchmark
 * (bench_restart.h): the consumer is a process of its own, replaced as on a deploy; each new one
 * binds to the same durable consumer. The nats-server -js is started by the runner. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench_latency.h"
#include "bench_producer.h"
#include "bench_report.h"
#include "bench_restart.h"
#include "bench_sink.h"
#include "bench_tally.h"
#include "bench_util.h"

#define BATCH 100
#define MAX_PENDING_ACKS 4096
#define DURABLE "c"

_Static_assert(BATCH <= BENCH_TALLY_BATCH, "a batch is one transaction of the account");

static const char usage[] =
    "--url nats://HOST:PORT (--events N | --rate EVENTS_PER_S --seconds S [--restart-every MS])"
    " --db FILE [--payload BYTES] [--pause-ms MS] [--timeout S]";

typedef struct nats_run {
  const char *url;
  long events;
  long rate; /* 0: flat out */
  double deadline;
  char stream[64];
  char subject[64];
} nats_run;

/* The library's own error text (with its stack) says more than the status name. */
static const char *nats_why(natsStatus s) {
  natsStatus last;
  const char *text = nats_GetLastError(&last);
  return text && *text ? text : natsStatus_GetText(s);
}

/* At a fixed rate each publish, pull request and ack goes out as it is made (SendAsap), as in a
 * service tuned for latency: by default the library holds writes back 1 ms to batch them. */
static natsStatus connect_to(natsConnection **nc, const nats_run *run) {
  natsOptions *opts = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, run->url);
  if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, run->rate > 0);
  if (s == NATS_OK) s = natsConnection_Connect(nc, opts);
  natsOptions_Destroy(opts);
  return s;
}

static int remaining_ms(double deadline) {
  double ms = (deadline - bench_now()) * 1000.0;
  return ms > 1.0 ? (int)ms : 1;
}

/* Runs on a library thread, for each publish the server refused or never confirmed. */
static atomic_long publish_failures;

static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
  (void)js;
  (void)pae;
  (void)closure;
  atomic_fetch_add(&publish_failures, 1);
}

static int produce(void *arg, bench_producer_report *r) {
  const nats_run *run = arg;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  natsStatus s = connect_to(&nc, run);
  jsOptions jo;
  jsOptions_Init(&jo);
  /* The bound on publishes in flight lives in the context options, not in jsPubOptions. */
  jo.PublishAsync.MaxPending = MAX_PENDING_ACKS;
  jo.PublishAsync.ErrHandler = on_publish_error;
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) {
    snprintf(r->error, sizeof r->error, "connect %s: %s", run->url, nats_why(s));
    natsConnection_Destroy(nc);
    return -1;
  }
  unsigned char payload[BENCH_PAYLOAD_MAX];
  bench_pace pace;
  bench_pace_start(&pace, run->rate, run->events);
  r->t_first = pace.start;
  long first, n;
  while (s == NATS_OK && (n = bench_pace_due(&pace, BATCH, &first)) > 0) {
    for (long i = first; i < first + n && s == NATS_OK; i++) {
      bench_payload_stamped(payload, i, bench_now());
      /* With MaxPending publishes unacknowledged the call waits StallWait (200 ms) and then
       * gives up with NATS_TIMEOUT, without sending: send the same event again. */
      do s = js_PublishAsync(js, run->subject, payload, bench_payload_size, NULL);
      while (s == NATS_TIMEOUT && bench_now() < run->deadline);
    }
  }
  if (s == NATS_OK) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = remaining_ms(run->deadline);
    s = js_PublishAsyncComplete(js, &po);
  }
  r->t_done = bench_now();
  long failed = atomic_load(&publish_failures);
  r->sent = s == NATS_OK ? run->events - failed : 0;
  if (s != NATS_OK)
    snprintf(r->error, sizeof r->error, "publish: %s", nats_why(s));
  else if (failed)
    snprintf(r->error, sizeof r->error, "%ld publishes not confirmed by the server", failed);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s == NATS_OK && failed == 0 ? 0 : -1;
}

static void must(natsStatus s, jsErrCode jerr, const char *what) {
  if (s != NATS_OK) bench_fail("%s: %s (JetStream error %d)", what, nats_why(s), (int)jerr);
}

/* Stores one fetched batch in one transaction, notes it in the account, then acks each
 * message. */
static void consume_batch(natsMsgList *list, bench_sink *sink, bench_tally *tally) {
  double received = bench_now();
  if (bench_sink_begin(sink) != 0) bench_fail("BEGIN: %s", bench_sink_error(sink));
  for (int k = 0; k < list->Count; k++) {
    const char *data = natsMsg_GetData(list->Msgs[k]);
    int len = natsMsg_GetDataLength(list->Msgs[k]);
    long index = bench_payload_index(data, (size_t)len);
    if (index < 0) bench_fail("a message without an event index");
    if (bench_sink_insert(sink, index, data, len) != 0)
      bench_fail("INSERT: %s", bench_sink_error(sink));
    bench_tally_stored(tally, index, data, len, received);
  }
  if (bench_sink_commit(sink) != 0) bench_fail("COMMIT: %s", bench_sink_error(sink));
  bench_tally_committed(tally, bench_now());
  /* Plain Ack, not AckSync: a normal service does not wait a round trip per message. */
  for (int k = 0; k < list->Count; k++) must(natsMsg_Ack(list->Msgs[k], NULL), 0, "ack");
}

/* Fetches up to BATCH messages, waiting for some a second at most, and stores them. */
static void fetch_batch(natsSubscription *sub, bench_sink *sink, bench_tally *tally) {
  natsMsgList list = {0};
  jsErrCode jerr = 0;
  /* Returns as soon as the server holds any message, with up to BATCH of them: the library
   * asks "no_wait" with an expiry, which the server answers once it has something. The
   * second only bounds an idle wait. */
  natsStatus s = natsSubscription_Fetch(&list, sub, BATCH, 1000, &jerr);
  if (s == NATS_TIMEOUT) return; /* nothing within a second: the caller looks at its clock */
  must(s, jerr, "fetch");
  consume_batch(&list, sink, tally);
  natsMsgList_Destroy(&list);
}

/* bench_consume's batch, from the subscription in `ud`. */
static void fetch_into(void *ud, bench_sink *sink, bench_tally *tally) {
  fetch_batch(ud, sink, tally);
}

/* Binds to the run's durable pull consumer, creating it the first time. */
static natsSubscription *subscribe(jsCtx *js, const nats_run *run) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = run->stream;
  so.Config.AckPolicy = js_AckExplicit;
  natsSubscription *sub = NULL;
  jsErrCode jerr = 0;
  must(js_PullSubscribe(&sub, js, run->subject, DURABLE, NULL, &so, &jerr), jerr,
       "pull subscribe");
  return sub;
}

/* One consumer process of the restart workload, until its supervisor asks it to stop. */
static int consumer_process(const bench_args *a, const nats_run *run) {
  bench_tally tally;
  bench_restart_consumer(&tally); /* before the library starts its threads */
  bench_sink sink;
  if (bench_sink_attach(&sink, a->db) != 0) bench_fail("%s: %s", a->db, bench_sink_error(&sink));
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  must(connect_to(&nc, run), 0, a->url);
  must(natsConnection_JetStream(&js, nc, NULL), 0, "JetStream context");
  natsSubscription *sub = subscribe(js, run);
  bench_tally_ready(&tally);
  /* A message a killed predecessor fetched and never acked comes again after the consumer's
   * AckWait, by the server's doing. */
  while (!bench_restart_stopping()) fetch_batch(sub, &sink, &tally);
  /* The acks went out without waiting: one round trip makes sure the server has them. */
  must(natsConnection_FlushTimeout(nc, 5000), 0, "flush");
  /* Not Unsubscribe: that would delete the durable consumer the next process resumes. */
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  bench_sink_close(&sink);
  return 0;
}

/* The stream keeps every payload on the server's disk: whether the run succeeds or fails
 * (bench_fail exits), it goes, and its consumer with it. */
static jsCtx *stream_js;
static const char *stream_to_drop;

static void drop_stream(void) {
  if (!stream_to_drop) return;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2000; /* a failed run may have lost the server: don't wait the default 5 s */
  js_DeleteStream(stream_js, stream_to_drop, &jo, NULL);
  stream_to_drop = NULL;
}

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv,
                   BENCH_ARG_URL | BENCH_ARG_EVENTS | BENCH_ARG_RATE | BENCH_ARG_RESTART |
                       BENCH_ARG_DB | BENCH_ARG_PAUSE,
                   usage);
  bench_watchdog(a.timeout_s + 15);

  nats_run run = {
      .url = a.url, .events = a.events, .rate = a.rate, .deadline = bench_now() + a.timeout_s};
  /* A fresh stream per run, deleted at the end: reruns never see earlier messages. */
  char name[40];
  bench_run_name(name, sizeof name, &a);
  snprintf(run.stream, sizeof run.stream, "BENCH_%s", name);
  snprintf(run.subject, sizeof run.subject, "bench.%s", name);
  if (a.consumer_of) return consumer_process(&a, &run);

  bench_sink sink;
  if (bench_sink_open(&sink, a.db) != 0) bench_fail("%s: %s", a.db, bench_sink_error(&sink));
  /* Registered before the fork so that, exit handlers running in reverse, a failed run kills
   * the producer first. The fork comes before any nats call here: the child must not inherit
   * the library's threads and locks. */
  atexit(drop_stream);
  bench_producer producer;
  if (bench_producer_fork(&producer, produce, &run, a.timeout_s) != 0)
    bench_fail("cannot start the producer process");

  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsErrCode jerr = 0;
  must(connect_to(&nc, &run), 0, a.url);
  must(natsConnection_JetStream(&js, nc, NULL), 0, "JetStream context");

  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  const char *subjects[] = {run.subject};
  sc.Name = run.stream;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  must(js_AddStream(NULL, js, &sc, NULL, &jerr), jerr, "add stream");
  stream_js = js;
  stream_to_drop = run.stream;

  bench_tally tally;
  bench_tally_init(&tally, a.events, a.rate > 0);
  if (a.restart_ms) {
    /* The first consumer process creates the durable consumer; deleting the stream at the
     * end deletes it. */
    bench_consume_restarting(argv, name, &a, &producer, &sink, &tally, run.deadline);
  } else {
    natsSubscription *sub = subscribe(js, &run);
    bench_consume(&a, &producer, &sink, &tally, run.deadline, fetch_into, sub);
    natsSubscription_Unsubscribe(sub); /* deletes the durable consumer this run created */
    natsSubscription_Destroy(sub);
  }
  drop_stream();
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  bench_tally_free(&tally);
  bench_sink_close(&sink);
  return 0;
}
