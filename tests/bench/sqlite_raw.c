/* The storage ceiling of the "pipeline" benchmark: the consumer's SQLite inserts alone, no
 * transport. Same table, same pragmas (WAL, synchronous=NORMAL), same prepared insert of
 * (i, 100-byte payload), with 1000 rows per transaction, where the broker peers commit 100. */
#include <stdio.h>

#include "bench_sink.h"
#include "bench_util.h"

#define ROWS_PER_TXN 1000

static const char usage[] = "--events N --db FILE [--payload BYTES] [--timeout S]";

int main(int argc, char **argv) {
  bench_args a;
  bench_args_parse(&a, argc, argv, BENCH_ARG_EVENTS | BENCH_ARG_DB, usage);
  bench_watchdog(a.timeout_s + 15);
  double deadline = bench_now() + a.timeout_s;

  bench_sink sink;
  if (bench_sink_open(&sink, a.db) != 0) bench_fail("%s: %s", a.db, bench_sink_error(&sink));
  unsigned char payload[BENCH_PAYLOAD_MAX];
  double t0 = bench_now();
  for (long base = 0; base < a.events; base += ROWS_PER_TXN) {
    if (bench_now() > deadline)
      bench_fail("time limit of %d s reached after %ld rows", a.timeout_s, base);
    long end = base + ROWS_PER_TXN < a.events ? base + ROWS_PER_TXN : a.events;
    if (bench_sink_begin(&sink) != 0) bench_fail("BEGIN: %s", bench_sink_error(&sink));
    for (long i = base; i < end; i++) {
      bench_payload(payload, i);
      if (bench_sink_insert(&sink, i, payload, bench_payload_size) != 0)
        bench_fail("INSERT: %s", bench_sink_error(&sink));
    }
    if (bench_sink_commit(&sink) != 0) bench_fail("COMMIT: %s", bench_sink_error(&sink));
  }
  double elapsed = bench_now() - t0;

  /* Cheap here, and it proves the figure counts rows that are really there. */
  long lost, duplicates;
  if (bench_sink_check(&sink, a.events, &lost, &duplicates) != 0 || lost || duplicates)
    bench_fail("the table does not hold exactly %ld rows", a.events);
  bench_sink_close(&sink);
  printf("{\"rows_per_s\": %.0f}\n", (double)a.events / elapsed);
  return 0;
}
