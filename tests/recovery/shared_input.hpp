#pragma once
// The one rule every recovery test suite follows for inputs from the shared
// data folder (lifeline::SharedDir(): $LIFELINE_SHARED_DIR, else
// <source>/../shared): when one is missing, the test FAILS if the CI
// environment variable is set and is SKIPPED, naming the path, otherwise.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "common/paths.hpp"

namespace lifeline::recovery::testing {

// <shared>/<relative>.
inline std::filesystem::path SharedInput(const std::filesystem::path& relative) {
  return lifeline::SharedDir() / relative;
}

inline bool UnderCi() { return std::getenv("CI") != nullptr; }

}  // namespace lifeline::recovery::testing

// Fails (under CI) or skips (elsewhere) the current test when `input` is absent.
#define LIFELINE_REQUIRE_SHARED(input)                                                           \
  do {                                                                                           \
    const std::filesystem::path lifeline_required_{(input)};                                     \
    if (!std::filesystem::exists(lifeline_required_)) {                                          \
      if (::lifeline::recovery::testing::UnderCi())                                              \
        GTEST_FAIL() << "shared input " << lifeline_required_                                    \
                     << " is missing (required when CI is set; set LIFELINE_SHARED_DIR)";        \
      GTEST_SKIP() << "shared input " << lifeline_required_                                      \
                   << " is missing; set LIFELINE_SHARED_DIR to run this test";                   \
    }                                                                                            \
  } while (0)
