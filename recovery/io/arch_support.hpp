#pragma once
// What the recovery decoder (recovery/model/decoder.hpp) can run, checked
// before a model is built: dense Llama / Mistral / Qwen2 / Qwen3 decoders with
// full causal attention (GQA), plain RoPE, RMSNorm, SiLU-gated MLP. Anything
// else is refused with the config file, the key and why, instead of being run
// as if it were a Llama:
//
//   model_type          not llama, mistral, qwen2, qwen3 (Gemma, GPT-OSS,
//                       DeepSeek, Phi, ... use layers the decoder lacks)
//   num_local_experts,  mixture-of-experts layers
//   num_experts, n_routed_experts
//   kv_lora_rank,       multi-head latent attention (DeepSeek MLA)
//   q_lora_rank
//   sliding_window,     attention restricted to a window (the decoder attends
//   layer_types         over the whole context)
//   rope_scaling,       RoPE frequencies other than the plain theta^(-2i/d)
//   rope_parameters     (llama3, yarn, linear, dynamic, ...)
//   partial_rotary_factor  RoPE on part of each head
//   hidden_act          a gate activation other than silu
//   attn_logit_softcapping, final_logit_softcapping  logit soft-capping

#include <filesystem>
#include <string>
#include <vector>

#include "roofline/spec/model_arch.hpp"

namespace lifeline::recovery {

// The model families the decoder runs (HF model_type values).
const std::vector<std::string>& RecoveryModelTypes();

// Reads `config_json` (a Hugging Face config.json), refuses what the decoder
// cannot run (ConfigError "file:line:col: key '...': ...; expected ... hint:
// ..."), then returns lifeline::LoadModelArch's architecture, with
// rope_parameters.rope_theta taken when the config keeps RoPE's base there.
ModelArch LoadRecoveryModelArch(const std::filesystem::path& config_json);

// The refusals that ModelArch itself can show, for an architecture from any
// source (llama2.c header, a test's hand-built ModelArch): mixture of experts,
// multi-head latent attention, sliding-window layers, an activation other
// than silu, soft-capping, sandwich norms, scaled embeddings, attention sinks. The decoder's
// constructor calls it. `where` names the source.
void CheckRecoverySupportsArch(const ModelArch& arch, const std::string& where);

}  // namespace lifeline::recovery
