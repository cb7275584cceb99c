/* A minimal assertion kit for the C unit tests: each failed CHECK prints file:line and the
 * expression, and the test's exit code is the number of failures. */
#ifndef CHOREO_TEST_CHECK_H
#define CHOREO_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
      check_failures++;                                                           \
    }                                                                             \
  } while (0)

#define CHECK_STR(got, want)                                                      \
  do {                                                                            \
    const char *got_ = (got), *want_ = (want);                                    \
    if (strcmp(got_, want_) != 0) {                                               \
      fprintf(stderr, "%s:%d: CHECK_STR failed: got \"%s\", want \"%s\"\n", __FILE__,   \
              __LINE__, got_, want_);                                             \
      check_failures++;                                                           \
    }                                                                             \
  } while (0)

#define RUN(test)                        \
  do {                                   \
    int before_ = check_failures;        \
    test();                              \
    fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #test); \
  } while (0)

#define CHECK_DONE() (check_failures ? 1 : 0)

/* Writes a whole file, checking every step. */
static inline void check_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
}

#endif
