#pragma once
// Decoder-only transformer (Llama / Qwen3 families) built from a ModelArch:
// GQA attention with RoPE, RMSNorm, optional per-head q/k RMSNorm (Qwen3),
// SwiGLU MLP, tied or untied LM head, and a batched KV cache.
//
// Module names follow Hugging Face, so named_parameters() yields
// `model.layers.3.mlp.gate_proj.weight` and the linear layers can be swapped
// by pattern (`mlp.gate_proj` matches `model.layers.3.mlp.gate_proj`).

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "recovery/model/linear.hpp"
#include "recovery/model/llama2c_checkpoint.hpp"
#include "roofline/spec/model_arch.hpp"

namespace lifeline::recovery {

// Per-layer keys and values of past positions, for incremental decoding.
struct KvCache {
  std::vector<at::Tensor> k;  // per layer (B, n_kv, max_len, head_dim)
  std::vector<at::Tensor> v;  // per layer (B, n_kv, max_len, head_dim)
  int64_t length = 0;         // positions already stored
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
};

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // (..., dim) -> (..., dim)

 private:
  at::Tensor weight_;  // (dim)
  double eps_;
};
TORCH_MODULE(RmsNorm);

class AttentionImpl : public LinearHost {
 public:
  AttentionImpl(const ModelArch& arch, bool rope_interleaved);
  // x (B, T, C); positions start at `pos0`; cos/sin (max_pos, head_dim/2).
  // With a cache, writes this step's keys/values at [pos0, pos0+T) of
  // `cache_k/v` (B, n_kv, max_len, hd) and attends over [0, pos0+T).
  // `mask` (rep*T, S) is the additive causal mask, undefined when T == 1.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, int64_t pos0, at::Tensor* cache_k,
                     at::Tensor* cache_v);

 private:
  at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const;
  int64_t n_heads_, n_kv_, head_dim_;
  bool rope_interleaved_;
  std::shared_ptr<LinearBase> q_proj_, k_proj_, v_proj_, o_proj_;
  RmsNorm q_norm_{nullptr}, k_norm_{nullptr};
};
TORCH_MODULE(Attention);

class MlpImpl : public LinearHost {
 public:
  explicit MlpImpl(const ModelArch& arch);
  at::Tensor forward(const at::Tensor& x);  // (B, T, C) -> (B, T, C)

 private:
  std::shared_ptr<LinearBase> gate_proj_, up_proj_, down_proj_;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelArch& arch, bool rope_interleaved);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, int64_t pos0, at::Tensor* cache_k,
                     at::Tensor* cache_v);

 private:
  RmsNorm input_layernorm_{nullptr}, post_attention_layernorm_{nullptr};
  Attention self_attn_{nullptr};
  Mlp mlp_{nullptr};
};
TORCH_MODULE(DecoderLayer);

// The `model.` part of the HF hierarchy: embeddings, layers, final norm.
class DecoderBodyImpl : public torch::nn::Module {
 public:
  DecoderBodyImpl(const ModelArch& arch, bool rope_interleaved);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(DecoderBody);

class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelArch& arch, bool rope_interleaved);

  // ids (B, T) int64 -> logits (B, T, V) float32.
  at::Tensor forward(const at::Tensor& ids);
  // Incremental form: appends ids (B, T) after `cache->length` positions and
  // returns their logits (B, T, V). `cache` may be null (= forward).
  at::Tensor Forward(const at::Tensor& ids, KvCache* cache);
  // Empty cache for `batch` sequences of up to `max_len` positions, on the
  // model's device.
  KvCache NewCache(int64_t batch, int64_t max_len) const;

  // Copies tensors by HF name (`model.layers.0.mlp.up_proj.weight`, ...).
  // Missing, unexpected or mis-shaped tensors -> ConfigError naming `where`.
  void LoadStateDict(const std::map<std::string, at::Tensor>& tensors,
                     const std::string& where = "checkpoint");

  // Full names of every linear layer ("model.layers.0.self_attn.q_proj", ...,
  // "lm_head" when untied), in model order, with the layer.
  std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> Linears() const;
  // Layers whose name matches any pattern. A pattern matching nothing ->
  // ConfigError naming `what` (e.g. "--layers") with the available names.
  std::vector<std::pair<std::string, std::shared_ptr<LinearBase>>> SelectLinears(
      const std::vector<std::string>& patterns, const std::string& what) const;
  // Replaces the linear layer `full_name` (as listed by Linears()).
  void ReplaceLinear(const std::string& full_name, std::shared_ptr<LinearBase> layer);

  const ModelArch& arch() const { return arch_; }
  bool rope_interleaved() const { return rope_interleaved_; }
  at::Device device() const { return cos_.device(); }

 private:
  ModelArch arch_;
  bool rope_interleaved_;
  DecoderBody model_{nullptr};
  std::shared_ptr<DenseLinear> lm_head_;  // null when tied
  at::Tensor cos_, sin_;                  // buffers (max_pos, head_dim/2)
};
TORCH_MODULE(Decoder);

// Builds a decoder from a checkpoint and loads its weights.
Decoder BuildDecoder(const Checkpoint& checkpoint);

}  // namespace lifeline::recovery
