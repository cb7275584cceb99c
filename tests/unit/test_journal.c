/* Unit tests for the journal (runtime/core/journal.c): entries noted in a batch come back as
 * noted, whichever way each field was written (a derived id, a value repeated from the entry
 * before, one too long to be remembered, nil, a time before the last entry's), by
 * conversation and by time; a discarded batch leaves nothing. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "journal.h"

#define ROWS 8

typedef struct seen {
  int n;
  choreo_journal_row row[ROWS];
  char *strings[ROWS][9]; /* copies: the row's strings live during the callback only */
} seen;

static const char *keep(seen *s, int field, const char *v) {
  return v ? (s->strings[s->n][field] = strdup(v)) : NULL;
}

static int collect(void *ud, const choreo_journal_row *row) {
  seen *s = ud;
  if (s->n == ROWS) return 1;
  choreo_journal_row *r = &s->row[s->n];
  *r = *row;
  r->id = keep(s, 0, row->id);
  r->source = keep(s, 1, row->source);
  r->type = keep(s, 2, row->type);
  r->kind = keep(s, 3, row->kind);
  r->correlation = keep(s, 4, row->correlation);
  r->causation = keep(s, 5, row->causation);
  r->handler = keep(s, 6, row->handler);
  r->outcome = keep(s, 7, row->outcome);
  r->error = keep(s, 8, row->error);
  s->n++;
  return 0;
}

static void seen_free(seen *s) {
  for (int i = 0; i < ROWS; i++)
    for (int f = 0; f < 9; f++) free(s->strings[i][f]);
  memset(s, 0, sizeof *s);
}

static choreo_str str(const char *s) { return (choreo_str){s, s ? strlen(s) : 0}; }

static choreo_msg msg(const char *id, int64_t seq, const char *type, const char *correlation,
                      const char *causation) {
  return (choreo_msg){.id = str(id), .source = str("svc"), .seq = seq, .type = str(type),
                      .kind = str("event"), .correlationid = str(correlation),
                      .causationid = str(causation)};
}

static bool same(const char *a, const char *b) { return a && b ? strcmp(a, b) == 0 : a == b; }

static void test_entries_read_back_as_noted(void) {
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
  choreo_journal *j = NULL;
  CHECK(choreo_journal_open(&j, db) == 0);
  static char long_type[300], long_error[70000];
  memset(long_type, 'T', sizeof long_type - 1);
  memset(long_error, 'e', sizeof long_error - 1);
  choreo_msg m1 = msg("svc/1", 1, "Placed", NULL, NULL); /* starts conversation svc/1 */
  choreo_msg m2 = msg("order-7", 2, "Placed", "svc/1", "svc/1");
  choreo_msg m3 = msg("svc/3", 3, long_type, "svc/1", "order-7");
  choreo_msg m4 = msg("svc/4", 4, long_type, "svc/1", "order-7");
  const choreo_journal_entry entries[] = {
      {.msg = &m1, .handler = "a.lua:3", .outcome = CHOREO_JOURNAL_OK, .attempts = 1,
       .at_ms = 1000, .duration_us = 5},
      {.msg = &m2, .handler = "a.lua:3", .outcome = CHOREO_JOURNAL_RETRYING, .attempts = 3,
       .at_ms = 990, .duration_us = (int64_t)1 << 40, .emitted_first = 7, .emitted_last = 9,
       .error = "boom"},
      {.msg = &m3, .handler = NULL, .outcome = CHOREO_JOURNAL_UNHANDLED, .at_ms = 5000000000,
       .error = long_error},
      {.msg = &m4, .handler = NULL, .outcome = CHOREO_JOURNAL_DEAD, .attempts = 70000,
       .at_ms = 5000000001, .duration_us = 1, .emitted_first = (int64_t)1 << 33,
       .emitted_last = (int64_t)1 << 33},
  };
  for (size_t i = 0; i < 4; i++) CHECK(choreo_journal_note(j, &entries[i]) == 0);
  CHECK(choreo_journal_flush(j, 6000000000) == 0);
  /* A batch that rolled back: nothing of it is written, and the next batch starts afresh. */
  choreo_msg lost = msg("svc/5", 5, "Placed", "svc/1", NULL);
  choreo_journal_entry gone = {.msg = &lost, .outcome = CHOREO_JOURNAL_OK, .at_ms = 7000000000};
  CHECK(choreo_journal_note(j, &gone) == 0);
  choreo_journal_discard(j);
  CHECK(choreo_journal_flush(j, 7000000001) == 0);

  seen s = {0};
  CHECK(choreo_journal_each(j, "svc/1", 10, collect, &s) == 0);
  CHECK(s.n == 4);
  for (int i = 0; i < s.n && i < 4; i++) {
    const choreo_journal_row *r = &s.row[i];
    const choreo_journal_entry *e = &entries[i];
    CHECK(same(r->id, (const char[][8]){"svc/1", "order-7", "svc/3", "svc/4"}[i]));
    CHECK(same(r->source, "svc") && same(r->kind, "event") && same(r->correlation, "svc/1"));
    CHECK(r->seq == e->msg->seq && same(r->type, e->msg->type.p));
    CHECK(same(r->causation, e->msg->causationid.p));
    CHECK(same(r->handler, e->handler) && same(r->error, e->error));
    CHECK(same(r->outcome, choreo_journal_outcome_name(e->outcome)));
    CHECK(r->at_ms == e->at_ms && r->attempts == e->attempts &&
          r->duration_us == e->duration_us && r->emitted_first == e->emitted_first &&
          r->emitted_last == e->emitted_last);
  }
  seen_free(&s);
  bool more = true;
  CHECK(choreo_journal_recent(j, 0, 10, collect, &s, &more) == 0);
  CHECK(s.n == 4 && !more);
  seen_free(&s);
  CHECK(choreo_journal_each(j, "svc/5", 10, collect, &s) == 0 && s.n == 0);
  choreo_journal_close(j);
  sqlite3_close(db);
}

int main(void) {
  RUN(test_entries_read_back_as_noted);
  return CHECK_DONE();
}
