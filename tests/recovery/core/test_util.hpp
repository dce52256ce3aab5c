#pragma once
// Helpers shared by the recovery core tests.

#include <filesystem>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "recovery/cli/recover_command.hpp"
#include "recovery/model/shared_paths.hpp"
#include "tests/error_of.hpp"
#include "tests/recovery/shared_input.hpp"

// Fails (under CI) or skips the test when the shared stories260K model is absent.
#define LIFELINE_REQUIRE_STORIES260K() LIFELINE_REQUIRE_SHARED(::lifeline::recovery::Stories260kModelPath())

namespace lifeline::recovery {

// Runs `recover ARGS` through the command-line parser; returns the
// ConfigError message ("" when none).
inline std::string RecoverCli(const std::string& args) {
  CLI::App app;
  AddRecoverCommand(app);
  return ErrorOf([&] { app.parse("recover " + args, false); });
}

// `msg` is an error that names every one of `parts`.
inline void ExpectHas(const std::string& msg, std::initializer_list<const char*> parts) {
  EXPECT_FALSE(msg.empty()) << "no error";
  for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

}  // namespace lifeline::recovery
