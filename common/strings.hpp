#pragma once
// Small string helpers shared across the project.

#include <string>
#include <string_view>
#include <vector>

namespace lifeline {

// `s` without leading and trailing characters from `chars`.
inline std::string Trim(std::string_view s, std::string_view chars = " \t") {
  const size_t a = s.find_first_not_of(chars);
  if (a == std::string_view::npos) return "";
  const size_t b = s.find_last_not_of(chars);
  return std::string(s.substr(a, b - a + 1));
}

// True when the dot-separated components of `pattern` appear as a run in
// `name`'s components, '*' matching any one component: "mlp.gate_proj" and
// "layers.*.mlp.gate_proj" match "model.layers.3.mlp.gate_proj"; "gate" does not.
inline bool DottedPatternMatches(std::string_view pattern, std::string_view name) {
  auto split = [](std::string_view v) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t dot; (dot = v.find('.', start)) != std::string_view::npos; start = dot + 1)
      out.push_back(v.substr(start, dot - start));
    if (start < v.size()) out.push_back(v.substr(start));
    return out;
  };
  const auto p = split(pattern), n = split(name);
  if (p.empty() || p.size() > n.size()) return false;
  for (size_t start = 0; start + p.size() <= n.size(); ++start) {
    bool ok = true;
    for (size_t i = 0; i < p.size() && ok; ++i) ok = p[i] == "*" || p[i] == n[start + i];
    if (ok) return true;
  }
  return false;
}

}  // namespace lifeline
