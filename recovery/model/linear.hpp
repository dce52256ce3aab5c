#pragma once
// Swappable linear layers. Every projection of the decoder is a LinearBase
// registered under its Hugging Face name (`q_proj`, `mlp.gate_proj`, ...), so
// the quantizer and LoRA can find it by pattern and replace it in place.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

namespace lifeline::recovery {

// A y = x W^T (+ b) layer whose implementation can vary (dense, LoRA, ...).
class LinearBase : public torch::nn::Module {
 public:
  virtual ~LinearBase() = default;
  virtual at::Tensor forward(const at::Tensor& x) = 0;  // (..., in) -> (..., out)
  // The dense (possibly fake-quantized) base weight, (out, in). Writable: the
  // quantizer overwrites it in place.
  virtual at::Tensor BaseWeight() const = 0;
  virtual int64_t InFeatures() const = 0;
  virtual int64_t OutFeatures() const = 0;
};

// Plain dense linear: parameters `weight` (out, in) and optional `bias` (out).
class DenseLinear : public LinearBase {
 public:
  DenseLinear(int64_t in_features, int64_t out_features, bool bias);
  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor BaseWeight() const override { return weight_; }
  int64_t InFeatures() const override { return weight_.size(1); }
  int64_t OutFeatures() const override { return weight_.size(0); }
  const at::Tensor& bias() const { return bias_; }

 private:
  at::Tensor weight_;  // (out, in)
  at::Tensor bias_;    // (out) or undefined
};

// A module owning swappable linear children (attention, MLP).
class LinearHost : public torch::nn::Module {
 public:
  // Replaces the direct child `child` (e.g. "gate_proj").
  void SetLinear(const std::string& child, std::shared_ptr<LinearBase> layer);
  std::shared_ptr<LinearBase> GetLinear(const std::string& child) const;

 protected:
  // Registers `layer` as child `child` and stores it in the subclass member
  // `*slot`, which SetLinear keeps up to date.
  void AddLinear(const std::string& child, std::shared_ptr<LinearBase> layer,
                 std::shared_ptr<LinearBase>* slot);

 private:
  std::vector<std::pair<std::string, std::shared_ptr<LinearBase>*>> slots_;
};

// True when `pattern` matches `name` as a contiguous run of dot-separated
// components, where a `*` component matches any one component:
// "mlp.gate_proj" and "layers.*.mlp.gate_proj" match
// "model.layers.3.mlp.gate_proj"; "gate" does not.
bool PatternMatches(const std::string& pattern, const std::string& name);

// Splits "a,b, c" into {"a","b","c"} (empty parts dropped).
std::vector<std::string> SplitPatterns(const std::string& csv);

}  // namespace lifeline::recovery
