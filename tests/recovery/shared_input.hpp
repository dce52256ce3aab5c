#pragma once
// Inputs of the recovery suites from the shared data folder
// (lifeline::SharedDir(): $LIFELINE_SHARED_DIR, else <source>/../shared),
// under the one rule of tests/require.hpp: a missing input FAILS when the CI
// environment variable is set and is SKIPPED, naming the path, otherwise.

#include <filesystem>

#include "common/paths.hpp"
#include "tests/require.hpp"

// Fails (under CI) or skips (elsewhere) the current test when `input` is absent.
#define LIFELINE_REQUIRE_SHARED(input)                                     \
  do {                                                                     \
    const std::filesystem::path lifeline_required_{(input)};                \
    LIFELINE_REQUIRE(std::filesystem::exists(lifeline_required_),          \
                     "shared input " << lifeline_required_ << " (set LIFELINE_SHARED_DIR)"); \
  } while (0)
