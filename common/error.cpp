#include "common/error.hpp"

namespace lifeline {

ConfigError MakeConfigError(const std::string& where, const std::string& key,
                            const std::string& problem,
                            const std::string& expected,
                            const std::string& hint) {
  std::string msg = where + ": ";
  if (!key.empty()) msg += "key '" + key + "': ";
  msg += problem;
  if (!expected.empty()) msg += "; expected " + expected;
  if (!hint.empty()) msg += ". hint: " + hint;
  return ConfigError(msg);
}

}  // namespace lifeline
