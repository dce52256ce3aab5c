#pragma once
// The one rule for every test whose input or tool may be absent on a
// developer's machine (shared data, gnuplot, chromium, slurm): under CI (the
// environment variable CI is set) a missing input is a FAILURE; elsewhere the
// test is SKIPPED with a message saying what is missing and how to get it.

#include <gtest/gtest.h>

#include <cstdlib>

namespace lifeline::testing {

inline bool UnderCi() { return std::getenv("CI") != nullptr; }

}  // namespace lifeline::testing

// Fails (under CI) or skips (elsewhere) the current test unless `available`.
#define LIFELINE_REQUIRE(available, what)                                           \
  do {                                                                              \
    if (!(available)) {                                                             \
      if (::lifeline::testing::UnderCi()) GTEST_FAIL() << "missing under CI: " << what; \
      GTEST_SKIP() << "missing: " << what;                                          \
    }                                                                               \
  } while (0)
