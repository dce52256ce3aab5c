#pragma once
// Helpers shared by the recovery core tests.

#include <filesystem>

#include <gtest/gtest.h>

#include "recovery/model/shared_paths.hpp"
#include "tests/recovery/shared_input.hpp"

// Fails (under CI) or skips the test when the shared stories260K model is absent.
#define LIFELINE_REQUIRE_STORIES260K() LIFELINE_REQUIRE_SHARED(::lifeline::recovery::Stories260kModelPath())
