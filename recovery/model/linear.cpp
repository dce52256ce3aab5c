#include "recovery/model/linear.hpp"

#include <sstream>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace lifeline::recovery {

DenseLinear::DenseLinear(int64_t in_features, int64_t out_features, bool bias) {
  weight_ = register_parameter("weight", at::zeros({out_features, in_features}));
  if (bias) bias_ = register_parameter("bias", at::zeros({out_features}));
}

at::Tensor DenseLinear::forward(const at::Tensor& x) {
  return bias_.defined() ? at::linear(x, weight_, bias_) : at::matmul(x, weight_.t());
}

void LinearHost::AddLinear(const std::string& child, std::shared_ptr<LinearBase> layer,
                           std::shared_ptr<LinearBase>* slot) {
  *slot = register_module(child, std::move(layer));
  slots_.emplace_back(child, slot);
}

void LinearHost::SetLinear(const std::string& child, std::shared_ptr<LinearBase> layer) {
  for (auto& [name, slot] : slots_) {
    if (name == child) {
      *slot = replace_module(child, std::move(layer));
      return;
    }
  }
  throw InternalError("no linear child named '" + child + "'");
}

std::shared_ptr<LinearBase> LinearHost::GetLinear(const std::string& child) const {
  for (const auto& [name, slot] : slots_) {
    if (name == child) return *slot;
  }
  throw InternalError("no linear child named '" + child + "'");
}

bool PatternMatches(const std::string& pattern, const std::string& name) {
  return DottedPatternMatches(pattern, name);
}

std::vector<std::string> SplitPatterns(const std::string& csv) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(csv);
  while (std::getline(in, cur, ',')) {
    const auto b = cur.find_first_not_of(" \t");
    const auto e = cur.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
  }
  return out;
}

}  // namespace lifeline::recovery
