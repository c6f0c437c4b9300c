#pragma once
// CHECK: aborts loudly on a broken invariant (a programmer error). User errors
// never reach a CHECK; they travel as Result.

#include <cstdio>
#include <cstdlib>

#define TESSERA_CHECK(cond)                                                     \
  do {                                                                          \
    if (!(cond)) [[unlikely]] {                                                 \
      std::fprintf(stderr, "CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                      \
      std::abort();                                                             \
    }                                                                           \
  } while (0)
