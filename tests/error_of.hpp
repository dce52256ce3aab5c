#pragma once
// The ConfigError message of a call, for tests of bad input.

#include <string>
#include <utility>

#include "common/error.hpp"

namespace lifeline {

// What `f()` throws as a ConfigError, or "" when it throws none.
template <typename F>
std::string ErrorOf(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace lifeline
