#pragma once
// Helpers shared by the recovery core tests.

#include <filesystem>

#include <gtest/gtest.h>

#include "recovery/model/shared_paths.hpp"

// Skips the test when the shared stories260K model is absent.
#define LIFELINE_REQUIRE_STORIES260K()                                              \
  do {                                                                              \
    if (!std::filesystem::exists(::lifeline::recovery::Stories260kModelPath()))     \
      GTEST_SKIP() << "shared model absent: "                                       \
                   << ::lifeline::recovery::Stories260kModelPath()                  \
                   << " (set LIFELINE_SHARED_DIR)";                                 \
  } while (0)
