#pragma once
// Loader for llama2.c legacy float32 checkpoints (`run.c` format, version 0).
//
// Layout: 7 int32 header fields (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier
// is not shared with the embedding), then float32 tensors in this order:
// token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
// freq_cis_real, freq_cis_imag, [wcls].

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "roofline/spec/model_arch.hpp"

namespace lifeline::recovery {

// A checkpoint in memory: architecture plus tensors under Hugging Face names
// (`model.layers.0.mlp.gate_proj.weight`, ...).
struct Checkpoint {
  ModelArch arch;                          // architecture read from the file
  std::map<std::string, at::Tensor> tensors;  // HF name -> float32 CPU tensor
  // RoPE convention: true = llama2.c interleaved pairs (x[2i], x[2i+1]);
  // false = Hugging Face rotate-half (x[i], x[i + head_dim/2]).
  bool rope_interleaved = false;
};

// Reads a llama2.c `.bin`. Throws ConfigError naming the file when it is
// missing, when the header is malformed, or when the file size does not match
// what the header implies (expected vs actual bytes).
Checkpoint LoadLlama2cCheckpoint(const std::filesystem::path& path);

// Bytes a llama2.c legacy checkpoint with this header must have.
int64_t Llama2cExpectedBytes(int64_t dim, int64_t hidden_dim, int64_t n_layers,
                             int64_t n_heads, int64_t n_kv_heads,
                             int64_t vocab_size, int64_t seq_len, bool shared_classifier);

}  // namespace lifeline::recovery
