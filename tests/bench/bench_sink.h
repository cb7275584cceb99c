/* The consumer's durable store in the benchmarks: one SQLite file with events(i, payload), WAL
 * and synchronous=NORMAL as a typical service would configure it, a prepared insert, explicit
 * transactions, and the after-run check for lost and duplicated events. A table without a key
 * on purpose: a duplicate delivery must show up as a second row, not as a constraint error. */
#ifndef BENCH_SINK_H
#define BENCH_SINK_H

#include <sqlite3.h>
#include <stdint.h>

typedef struct bench_sink {
  sqlite3 *db;
  sqlite3_stmt *insert;
  sqlite3_stmt *begin;
  sqlite3_stmt *commit;
} bench_sink;

/* Starts from an empty database at `path`: an earlier run's file (and its -wal, -shm) is
 * removed, so reruns are clean. Returns 0, or -1 with the reason in bench_sink_error. */
int bench_sink_open(bench_sink *s, const char *path);

/* Opens the database an earlier bench_sink_open made at `path`, as it is: how each consumer
 * process of the restart workload, and the check after them, reach the one store they share.
 * Returns 0, or -1 with the reason in bench_sink_error. */
int bench_sink_attach(bench_sink *s, const char *path);

int bench_sink_begin(bench_sink *s);
int bench_sink_insert(bench_sink *s, int64_t i, const void *payload, int len);
int bench_sink_commit(bench_sink *s);

/* After the run: lost = indexes in [0, n) without a row; duplicates = rows beyond the first
 * per index. */
int bench_sink_check(bench_sink *s, long n, long *lost, long *duplicates);

const char *bench_sink_error(const bench_sink *s);
void bench_sink_close(bench_sink *s);

#endif
