#pragma once
// Error types shared by every lifeline module. Only `main` catches them and
// prints `error: ...`; library code never calls exit().

#include <stdexcept>
#include <string>

namespace lifeline {

// Base of every error lifeline raises on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input: the message carries `file:line:col`, the key path, what was
// expected and a hint on how to fix it.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Valid input describing something impossible (e.g. a model that does not fit
// the device memory). Sweeps record it as a row and go on.
class InfeasibleError : public Error {
 public:
  using Error::Error;
};

// Internal invariant broken: a bug in lifeline, never bad input.
class InternalError : public Error {
 public:
  using Error::Error;
};

// Builds the canonical ConfigError message:
//   <where>: key '<key>': <problem>; expected <expected>. hint: <hint>
// `where` is "file:line:col" (or just "file" when no position is known).
ConfigError MakeConfigError(const std::string& where, const std::string& key,
                            const std::string& problem,
                            const std::string& expected,
                            const std::string& hint = "");

}  // namespace lifeline

// Internal check that stays on in release builds.
#define LIFELINE_CHECK(cond, msg)                                          \
  do {                                                                     \
    if (!(cond))                                                           \
      throw ::lifeline::InternalError(std::string("internal check failed: ") + \
                                      #cond + " at " + __FILE__ + ":" +    \
                                      std::to_string(__LINE__) + ": " + (msg)); \
  } while (0)
