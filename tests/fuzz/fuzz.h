/* What the libFuzzer harnesses of tests/fuzz share. An invariant that fails aborts, which
 * libFuzzer reports as a crash and saves the input that broke it. */
#ifndef CHOREO_FUZZ_H
#define CHOREO_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

/* libFuzzer's entry points: each harness defines the second, and the first if it has set-up to
 * do once. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
