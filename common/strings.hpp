#pragma once
// Small string helpers shared across the project.

#include <string>
#include <string_view>

namespace lifeline {

// `s` without leading and trailing characters from `chars`.
inline std::string Trim(std::string_view s, std::string_view chars = " \t") {
  const size_t a = s.find_first_not_of(chars);
  if (a == std::string_view::npos) return "";
  const size_t b = s.find_last_not_of(chars);
  return std::string(s.substr(a, b - a + 1));
}

}  // namespace lifeline
