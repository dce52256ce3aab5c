#pragma once
// Recovery methods (Recover-LoRA, EMNLP 2025, and its baselines):
//   recover-lora - LoRA adapters on the frozen degraded layers, trained by
//                  KL(teacher || student) distillation;
//   llm-qat      - every parameter of the degraded model trained by the same
//                  KL distillation, no adapters (the paper's LLM-QAT*); with
//                  quant and `qat_ste`, the quantized layers keep their
//                  weights on the quantization grid: the forward pass uses
//                  fake-quantized weights and the gradient passes straight
//                  through to the latent full-precision weights (STE);
//   sft-lora     - LoRA adapters trained by next-token cross-entropy on the
//                  training sequences' own tokens (SFT-LoRA).

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/model/decoder.hpp"
#include "recovery/model/linear.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/train/distill.hpp"

namespace lifeline::recovery {

enum class RecoveryMethod { kRecoverLora, kLlmQat, kSftLora };

// "recover-lora" / "llm-qat" / "sft-lora"; ConfigError naming `where` otherwise.
RecoveryMethod ParseRecoveryMethod(const std::string& s, const std::string& where);
std::string RecoveryMethodName(RecoveryMethod m);
const std::vector<std::string>& RecoveryMethodNames();
// Whether the method trains LoRA adapters (recover-lora, sft-lora).
bool UsesAdapters(RecoveryMethod m);
// The loss the method minimizes.
TrainLoss MethodLoss(RecoveryMethod m);

// A dense layer trained through its fake-quantized weight: forward uses
// Q(W) = Dequantize(QuantizeRtn(W)), the backward pass treats Q as the
// identity (straight-through estimator). Shares the wrapped layer's weight
// and bias, under the same names.
class SteQuantLinear : public LinearBase {
 public:
  SteQuantLinear(const std::shared_ptr<LinearBase>& dense, const QuantConfig& cfg, const std::string& name);
  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor BaseWeight() const override { return weight_; }  // the latent weight
  int64_t InFeatures() const override { return weight_.size(1); }
  int64_t OutFeatures() const override { return weight_.size(0); }
  // Q(W): the weight the layer computes with and deploys.
  at::Tensor QuantizedWeight() const;
  const QuantConfig& config() const { return cfg_; }

 private:
  at::Tensor weight_, bias_;
  QuantConfig cfg_;
  std::string name_;
};

// Wraps every linear matching `patterns` in a SteQuantLinear. Returns the
// wrapped names. ConfigError (naming `what`) when a pattern matches nothing
// or a layer is not dense.
std::vector<std::string> AttachSteQuant(Decoder& model, const std::vector<std::string>& patterns,
                                        const QuantConfig& cfg, const std::string& what);
// Replaces every SteQuantLinear by a dense layer holding Q(W): the deployed
// model, whose quantized layers are exactly on the grid.
void BakeSteQuant(Decoder& model);

// Every parameter of `model` by name (shared tensors once).
NamedTensors AllParameters(const Decoder& model);

}  // namespace lifeline::recovery
