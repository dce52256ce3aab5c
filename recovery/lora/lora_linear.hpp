#pragma once
// LoRA adapters on frozen (possibly fake-quantized) linear layers
// (METHOD.md §2.3): y = W'x + (alpha / r) · B·A·dropout(x).

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/model/decoder.hpp"
#include "recovery/model/linear.hpp"

namespace lifeline::recovery {

// How the adapters (and, for olora/loftq, the frozen base) start. The
// constructor below always makes the standard init; olora and loftq are then
// applied by InitializeAdapters (init.hpp), which needs the run's quantizer
// and the full-precision weights.
enum class LoraInit {
  kStandard,  // A ~ Kaiming-uniform(a = √5) = U(±1/√in), B = 0 (PEFT's default)
  kOlora,     // PEFT's OLoRA: QR of the weight, base re-quantized on the grid
  kLoftq,     // LoftQ: alternating quantize / SVD, base = Q on the grid
};

struct LoraConfig {
  int64_t rank = 32;          // r
  double alpha = 64.0;        // α; the update is scaled by α / r
  double dropout = 0.0;       // dropout on the adapter input while training
  LoraInit init = LoraInit::kStandard;
  std::vector<std::string> targets = {"mlp.gate_proj", "mlp.up_proj"};  // layer patterns
  double Scaling() const { return alpha / static_cast<double>(rank); }
};

class LoraLinear : public LinearBase {
 public:
  // Wraps `base` (its parameters are frozen). `name` is used in errors.
  // Rank larger than min(in, out) -> ConfigError.
  LoraLinear(std::shared_ptr<LinearBase> base, const LoraConfig& cfg, const std::string& name);

  at::Tensor forward(const at::Tensor& x) override;  // (..., in) -> (..., out)
  at::Tensor BaseWeight() const override { return base_->BaseWeight(); }
  int64_t InFeatures() const override { return base_->InFeatures(); }
  int64_t OutFeatures() const override { return base_->OutFeatures(); }

  // W += (α/r)·B·A; forward then skips the adapter branch. Unmerge undoes it.
  void Merge();
  void Unmerge();
  bool merged() const { return merged_; }

  at::Tensor& lora_A() { return lora_A_; }  // (r, in)
  at::Tensor& lora_B() { return lora_B_; }  // (out, r)
  const std::shared_ptr<LinearBase>& base() const { return base_; }
  const LoraConfig& config() const { return cfg_; }

 private:
  std::shared_ptr<LinearBase> base_;
  LoraConfig cfg_;
  at::Tensor lora_A_;  // (r, in)
  at::Tensor lora_B_;  // (out, r)
  bool merged_ = false;
};

// Wraps every linear matching cfg.targets with a LoraLinear and freezes all
// non-LoRA parameters of `model`. Returns the wrapped layer names.
// Pattern matching nothing, or rank too large -> ConfigError (`what` names
// the option, e.g. "--lora-targets").
std::vector<std::string> AttachLora(Decoder& model, const LoraConfig& cfg,
                                    const std::string& what = "--lora-targets");

// The LoRA layers of `model`, by full name.
std::vector<std::pair<std::string, std::shared_ptr<LoraLinear>>> LoraLayers(const Decoder& model);

// Trainable adapter tensors by name ("<layer>.lora_A", "<layer>.lora_B").
std::vector<std::pair<std::string, at::Tensor>> LoraParameters(const Decoder& model);

// Copies of the adapter tensors (for restoring a good state) and back.
std::map<std::string, at::Tensor> SnapshotLora(const Decoder& model);
void RestoreLora(Decoder& model, const std::map<std::string, at::Tensor>& snapshot);

// "standard" / "olora" / "loftq" <-> LoraInit (ConfigError otherwise; "svd"
// is refused with the reason).
LoraInit ParseLoraInit(const std::string& s, const std::string& where);
std::string LoraInitName(LoraInit init);

}  // namespace lifeline::recovery
