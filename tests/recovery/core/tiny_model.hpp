#pragma once
// A tiny random Llama for the recovery unit tests: 2 layers, hidden 32, 4
// query heads and 2 KV heads of 8, gated MLP 64, vocabulary 40, tied
// embeddings; its INT2 gate/up student; random token sequences.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/types.h>

#include "recovery/lora/lora_linear.hpp"
#include "recovery/quant/rtn.hpp"

namespace lifeline::recovery::test {

inline ModelArch TinyArch() {
  ModelArch a;
  a.name = "tiny";
  a.model_type = "llama";
  a.hidden_size = 32;
  a.intermediate_size = 64;
  a.num_hidden_layers = 2;
  a.num_attention_heads = 4;
  a.num_key_value_heads = 2;
  a.head_dim = 8;
  a.vocab_size = 40;
  a.max_position_embeddings = 64;
  a.tie_word_embeddings = true;
  return a;
}

struct TinyPair {
  Decoder teacher{nullptr}, student{nullptr};
};

// A random teacher (weights N(0, 0.3) from `seed`, frozen) and a copy with
// gate/up fake-quantized INT2 g32 asymmetric; with `lora_rank` > 0 the
// student carries LoRA adapters of that rank (alpha = 2 x rank).
inline TinyPair MakeTinyPair(uint64_t seed, int64_t lora_rank) {
  at::manual_seed(static_cast<int64_t>(seed));
  TinyPair p;
  p.teacher = Decoder(TinyArch(), false);
  {
    torch::NoGradGuard g;
    for (auto& t : p.teacher->parameters()) t.normal_(0, 0.3);
  }
  std::map<std::string, at::Tensor> sd;
  for (const auto& item : p.teacher->named_parameters()) sd[item.key()] = item.value().detach();
  p.student = Decoder(TinyArch(), false);
  p.student->LoadStateDict(sd);
  FakeQuantizeLayers(p.student, {"mlp.gate_proj", "mlp.up_proj"}, {2, 32, QuantScheme::kAsymmetric});
  if (lora_rank > 0) {
    LoraConfig cfg;
    cfg.rank = lora_rank;
    cfg.alpha = 2.0 * static_cast<double>(lora_rank);
    AttachLora(p.student, cfg);
  }
  for (auto& t : p.teacher->parameters()) t.set_requires_grad(false);
  return p;
}

// `n` random sequences of `len` tokens from the tiny vocabulary; with
// `ragged`, sequence i is i % 5 tokens shorter.
inline std::vector<std::vector<int64_t>> RandomTokens(int64_t n, int64_t len, bool ragged) {
  std::vector<std::vector<int64_t>> d;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor t = at::randint(0, 40, {ragged ? len - i % 5 : len}, at::kLong);
    d.emplace_back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }
  return d;
}

}  // namespace lifeline::recovery::test
