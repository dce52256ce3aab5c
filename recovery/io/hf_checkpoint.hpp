#pragma once
// Hugging Face checkpoint loader for the dense decoder families lifeline
// recovers (Llama, Qwen2/Qwen3, Mistral-style): config.json plus
// model.safetensors or model.safetensors.index.json with its shards.

#include <filesystem>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

#include "roofline/spec/model_arch.hpp"

namespace lifeline::recovery {

struct HfCheckpoint {
  lifeline::ModelArch arch;  // from dir/config.json via lifeline::LoadModelArch
  // Tensors under their Hugging Face names (model.embed_tokens.weight,
  // model.layers.N.self_attn.{q,k,v,o}_proj.weight, ...q_norm.weight,
  // model.layers.N.mlp.{gate,up,down}_proj.weight, model.norm.weight,
  // lm_head.weight), float32 on the CPU. With tie_word_embeddings and no
  // lm_head.weight in the files, lm_head.weight is absent here: use
  // model.embed_tokens.weight. Tensors the files hold beyond the expected
  // ones (e.g. rotary inv_freq buffers) are kept as they are.
  std::map<std::string, at::Tensor> tensors;
};

// Loads `dir`: reads dir/config.json, then dir/model.safetensors, or when
// absent dir/model.safetensors.index.json ("weight_map": name -> shard file)
// and every shard it names. Converts floating tensors to float32 and checks
// that every tensor ExpectedHfTensorShapes lists is present with that shape.
// Throws ConfigError naming the tensor and file on any problem (missing
// files, a tensor the index promises but its shard lacks, a wrong shape,
// MoE architectures, which this loader does not support).
HfCheckpoint LoadHfCheckpoint(const std::filesystem::path& dir);

// The tensors a dense decoder with `arch` must have, name -> shape.
// lm_head.weight is listed only when the embeddings are not tied; q/k/v
// biases when attention_bias or qkv_bias, o_proj's when attention_bias, MLP
// biases when mlp_bias; q_norm / k_norm when qk_norm.
std::map<std::string, std::vector<int64_t>> ExpectedHfTensorShapes(
    const lifeline::ModelArch& arch);

}  // namespace lifeline::recovery
