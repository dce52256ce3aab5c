#include "recovery/lora/lora_linear.hpp"

#include <cmath>

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"

namespace lifeline::recovery {

LoraLinear::LoraLinear(std::shared_ptr<LinearBase> base, const LoraConfig& cfg,
                       const std::string& name)
    : cfg_(cfg) {
  const int64_t in = base->InFeatures(), out = base->OutFeatures();
  if (cfg.rank <= 0 || cfg.rank > std::min(in, out)) {
    throw ConfigError(fmt::format("--rank: LoRA rank {} is invalid for layer {} ({} -> {}); "
                                  "expected 1..{}. hint: lower the rank",
                                  cfg.rank, name, in, out, std::min(in, out)));
  }
  if (cfg.dropout < 0 || cfg.dropout >= 1) {
    throw ConfigError(fmt::format("--dropout: {} is not in [0, 1)", cfg.dropout));
  }
  base_ = register_module("base_layer", std::move(base));
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  const auto opts = base_->BaseWeight().options();
  torch::NoGradGuard no_grad;
  // Standard init (kaiming_uniform(a=√5) on A, zero B); olora/loftq
  // overwrite it in InitializeAdapters.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  const at::Tensor a = at::empty({cfg.rank, in}, opts).uniform_(-bound, bound);
  const at::Tensor b = at::zeros({out, cfg.rank}, opts);
  lora_A_ = register_parameter("lora_A", a);
  lora_B_ = register_parameter("lora_B", b);
}

at::Tensor LoraLinear::forward(const at::Tensor& x) {
  at::Tensor y = base_->forward(x);
  if (merged_) return y;
  const at::Tensor xd = cfg_.dropout > 0 ? at::dropout(x, cfg_.dropout, is_training()) : x;
  return y + at::matmul(at::matmul(xd, lora_A_.t()), lora_B_.t()) * cfg_.Scaling();
}

void LoraLinear::Merge() {
  if (merged_) return;
  torch::NoGradGuard no_grad;
  base_->BaseWeight().add_(at::matmul(lora_B_, lora_A_) * cfg_.Scaling());
  merged_ = true;
}

void LoraLinear::Unmerge() {
  if (!merged_) return;
  torch::NoGradGuard no_grad;
  base_->BaseWeight().sub_(at::matmul(lora_B_, lora_A_) * cfg_.Scaling());
  merged_ = false;
}

std::vector<std::string> AttachLora(Decoder& model, const LoraConfig& cfg, const std::string& what) {
  const auto layers = model->SelectLinears(cfg.targets, what);
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  std::vector<std::string> names;
  for (const auto& [name, lin] : layers) {
    if (std::dynamic_pointer_cast<LoraLinear>(lin)) {
      throw ConfigError(fmt::format("{}: layer {} already has a LoRA adapter", what, name));
    }
    model->ReplaceLinear(name, std::make_shared<LoraLinear>(lin, cfg, name));
    names.push_back(name);
  }
  return names;
}

std::vector<std::pair<std::string, std::shared_ptr<LoraLinear>>> LoraLayers(const Decoder& model) {
  std::vector<std::pair<std::string, std::shared_ptr<LoraLinear>>> out;
  for (const auto& [name, lin] : model->Linears()) {
    if (auto l = std::dynamic_pointer_cast<LoraLinear>(lin)) out.emplace_back(name, l);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> LoraParameters(const Decoder& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [name, l] : LoraLayers(model)) {
    out.emplace_back(name + ".lora_A", l->lora_A());
    out.emplace_back(name + ".lora_B", l->lora_B());
  }
  return out;
}

std::map<std::string, at::Tensor> SnapshotLora(const Decoder& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : LoraParameters(model)) out[name] = t.detach().clone();
  return out;
}

void RestoreLora(Decoder& model, const std::map<std::string, at::Tensor>& snapshot) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : LoraParameters(model)) {
    auto it = snapshot.find(name);
    if (it == snapshot.end()) throw InternalError("adapter snapshot lacks " + name);
    t.copy_(it->second);
  }
}

LoraInit ParseLoraInit(const std::string& s, const std::string& where) {
  if (s == "standard") return LoraInit::kStandard;
  if (s == "olora") return LoraInit::kOlora;
  if (s == "loftq") return LoraInit::kLoftq;
  if (s == "svd")
    throw MakeConfigError(where, "init",
                          "'svd' is no longer supported: it moved the top-r part of the weight into the adapters "
                          "and left a float residual as the frozen base, so the base was no longer the "
                          "quantized weight that would be deployed",
                          "standard, olora or loftq",
                          "use olora (PEFT's OLoRA, base re-quantized on the grid) or loftq (alternating "
                          "quantize/SVD, base = the deployed quantized weight)");
  throw MakeConfigError(where, "init", fmt::format("unknown LoRA init '{}'", s), "standard, olora or loftq");
}

std::string LoraInitName(LoraInit init) {
  switch (init) {
    case LoraInit::kStandard: return "standard";
    case LoraInit::kOlora: return "olora";
    case LoraInit::kLoftq: return "loftq";
  }
  return "standard";
}

}  // namespace lifeline::recovery
