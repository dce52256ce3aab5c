#include "recovery/train/methods.hpp"

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"

namespace lifeline::recovery {

const std::vector<std::string>& RecoveryMethodNames() {
  static const std::vector<std::string> names = {"recover-lora", "llm-qat", "sft-lora"};
  return names;
}

RecoveryMethod ParseRecoveryMethod(const std::string& s, const std::string& where) {
  if (s == "recover-lora") return RecoveryMethod::kRecoverLora;
  if (s == "llm-qat") return RecoveryMethod::kLlmQat;
  if (s == "sft-lora") return RecoveryMethod::kSftLora;
  throw MakeConfigError(where, "method", fmt::format("unknown method '{}'", s),
                        fmt::format("one of: {}", fmt::join(RecoveryMethodNames(), ", ")));
}

std::string RecoveryMethodName(RecoveryMethod m) {
  switch (m) {
    case RecoveryMethod::kRecoverLora: return "recover-lora";
    case RecoveryMethod::kLlmQat: return "llm-qat";
    case RecoveryMethod::kSftLora: return "sft-lora";
  }
  return "?";
}

bool UsesAdapters(RecoveryMethod m) { return m != RecoveryMethod::kLlmQat; }

TrainLoss MethodLoss(RecoveryMethod m) {
  return m == RecoveryMethod::kSftLora ? TrainLoss::kCrossEntropy : TrainLoss::kKl;
}

SteQuantLinear::SteQuantLinear(const std::shared_ptr<LinearBase>& dense, const QuantConfig& cfg,
                               const std::string& name)
    : cfg_(cfg), name_(name) {
  auto d = std::dynamic_pointer_cast<DenseLinear>(dense);
  if (!d)
    throw ConfigError(fmt::format("--qat-ste: layer {} is not a plain dense layer (adapters attached?); "
                                  "expected the degraded model's own linear layer",
                                  name));
  CheckQuantConfig(cfg, d->InFeatures(), "--qat-ste: " + name);
  weight_ = register_parameter("weight", d->BaseWeight());
  if (d->bias().defined()) bias_ = register_parameter("bias", d->bias());
}

at::Tensor SteQuantLinear::QuantizedWeight() const {
  torch::NoGradGuard g;
  return FakeQuantize(weight_.detach(), cfg_, name_);
}

at::Tensor SteQuantLinear::forward(const at::Tensor& x) {
  // w + (Q(w) - w) without gradient through the bracket: value Q(w), d/dw = 1.
  const at::Tensor w = weight_ + (QuantizedWeight() - weight_.detach());
  return bias_.defined() ? at::linear(x, w, bias_) : at::matmul(x, w.t());
}

std::vector<std::string> AttachSteQuant(Decoder& model, const std::vector<std::string>& patterns,
                                        const QuantConfig& cfg, const std::string& what) {
  std::vector<std::string> names;
  for (const auto& [name, lin] : model->SelectLinears(patterns, what)) {
    model->ReplaceLinear(name, std::make_shared<SteQuantLinear>(lin, cfg, name));
    names.push_back(name);
  }
  return names;
}

void BakeSteQuant(Decoder& model) {
  for (const auto& [name, lin] : model->Linears()) {
    auto ste = std::dynamic_pointer_cast<SteQuantLinear>(lin);
    if (!ste) continue;
    const at::Tensor q = ste->QuantizedWeight();
    const auto bias = ste->named_parameters(false).find("bias");
    auto dense = std::make_shared<DenseLinear>(ste->InFeatures(), ste->OutFeatures(), bias != nullptr);
    {
      torch::NoGradGuard g;
      dense->BaseWeight().copy_(q);
      if (bias) dense->bias().copy_(*bias);
    }
    dense->to(q.device());
    model->ReplaceLinear(name, dense);
  }
}

NamedTensors AllParameters(const Decoder& model) {
  NamedTensors out;
  for (const auto& item : model->named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace lifeline::recovery
