#include "recovery/io/arch_support.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/yaml_util.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kHint = "the recovery decoder runs dense Llama, Mistral, Qwen2 and Qwen3 models";

bool IsSet(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// A positive number of experts under `key`.
bool HasExperts(const json& j, const char* key) {
  return IsSet(j, key) && j[key].is_number() && j[key].get<double>() > 0;
}

}  // namespace

const std::vector<std::string>& RecoveryModelTypes() {
  static const std::vector<std::string> types = {"llama", "mistral", "qwen2", "qwen3"};
  return types;
}

ModelArch LoadRecoveryModelArch(const fs::path& config_json) {
  const std::string file = config_json.string();
  std::ifstream in(config_json, std::ios::binary);
  if (!in) throw MakeConfigError(file, "", "cannot open file", "a readable config.json", "check the path");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::map<std::string, std::string> key_where;
  const json j = ParseJsonStrict(ss.str(), file, &key_where);
  if (!j.is_object()) throw MakeConfigError(file, "", "not a JSON object", "a Hugging Face config.json", "");
  auto where = [&](const std::string& key) { return key_where.count(key) ? key_where.at(key) : file; };
  auto refuse = [&](const std::string& key, const std::string& problem, const std::string& expected) {
    return MakeConfigError(where(key), key, problem + " (the recovery decoder would run it as a plain " +
                                                "decoder and give different logits)",
                           expected, kHint);
  };

  if (!j.contains("model_type") || !j["model_type"].is_string())
    throw MakeConfigError(file, "model_type", "missing or not a string",
                          fmt::format("one of {}", fmt::join(RecoveryModelTypes(), ", ")), kHint);
  const std::string type = j["model_type"].get<std::string>();
  const auto& types = RecoveryModelTypes();
  if (std::find(types.begin(), types.end(), type) == types.end())
    throw MakeConfigError(where("model_type"), "model_type",
                          "'" + type + "' is a model family the recovery decoder does not implement",
                          fmt::format("one of {}", fmt::join(types, ", ")), kHint);
  for (const char* key : {"num_local_experts", "num_experts", "n_routed_experts"})
    if (HasExperts(j, key)) throw refuse(key, "mixture-of-experts layers", "a dense model (no experts)");
  for (const char* key : {"kv_lora_rank", "q_lora_rank"})
    if (IsSet(j, key)) throw refuse(key, "multi-head latent attention", "standard (GQA) attention");
  const bool sliding_off = j.contains("use_sliding_window") && j["use_sliding_window"].is_boolean() &&
                           !j["use_sliding_window"].get<bool>();
  if (IsSet(j, "sliding_window") && !sliding_off &&
      !(j["sliding_window"].is_number() && j["sliding_window"].get<double>() <= 0))
    throw refuse("sliding_window", "sliding-window attention (" + j["sliding_window"].dump() + " tokens)",
                 "null, or use_sliding_window: false");
  if (IsSet(j, "layer_types") && j["layer_types"].is_array()) {
    for (const auto& t : j["layer_types"])
      if (!t.is_string() || t.get<std::string>() != "full_attention")
        throw refuse("layer_types", "a layer of type " + t.dump(), "only \"full_attention\" layers");
  }
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!IsSet(j, key)) continue;
    const json& r = j[key];
    const std::string rope_type = !r.is_object()                        ? r.dump()
                                  : r.contains("rope_type") && r["rope_type"].is_string() ? r["rope_type"].get<std::string>()
                                  : r.contains("type") && r["type"].is_string()           ? r["type"].get<std::string>()
                                                                                         : "default";
    if (rope_type != "default") throw refuse(key, "RoPE scaling '" + rope_type + "'", "plain RoPE (null or \"default\")");
  }
  if (IsSet(j, "partial_rotary_factor") &&
      !(j["partial_rotary_factor"].is_number() && j["partial_rotary_factor"].get<double>() == 1.0))
    throw refuse("partial_rotary_factor", "RoPE on part of each head (" + j["partial_rotary_factor"].dump() + ")",
                 "1.0");
  for (const char* key : {"hidden_act", "hidden_activation"}) {
    if (IsSet(j, key) && !(j[key].is_string() && j[key].get<std::string>() == "silu"))
      throw refuse(key, "gate activation " + j[key].dump(), "\"silu\"");
  }
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"})
    if (IsSet(j, key)) throw refuse(key, "logit soft-capping", "null");

  ModelArch arch = LoadModelArch(config_json);
  // Newer configs keep rope_theta inside rope_parameters.
  if (IsSet(j, "rope_parameters") && j["rope_parameters"].is_object() &&
      j["rope_parameters"].contains("rope_theta") && j["rope_parameters"]["rope_theta"].is_number()) {
    const double theta = j["rope_parameters"]["rope_theta"].get<double>();
    if (IsSet(j, "rope_theta") && j["rope_theta"].is_number() && j["rope_theta"].get<double>() != theta)
      throw MakeConfigError(where("rope_parameters"), "rope_parameters.rope_theta",
                            fmt::format("{} differs from rope_theta {}", theta, j["rope_theta"].get<double>()),
                            "one RoPE base", "remove one of the two");
    arch.rope_theta = theta;
  }
  CheckRecoverySupportsArch(arch, file);
  return arch;
}

void CheckRecoverySupportsArch(const ModelArch& arch, const std::string& where) {
  if (arch.IsMoe())
    throw MakeConfigError(where, "num_local_experts",
                          fmt::format("mixture-of-experts layers ({} experts)", arch.num_local_experts),
                          "a dense model", kHint);
  const bool sliding_layer = std::any_of(arch.layer_types.begin(), arch.layer_types.end(),
                                         [](AttentionKind k) { return k == AttentionKind::kSliding; });
  if (arch.sliding_window > 0 || sliding_layer)
    throw MakeConfigError(where, sliding_layer ? "layer_types" : "sliding_window",
                          fmt::format("sliding-window attention ({} tokens); the decoder attends over the "
                                      "whole context",
                                      arch.sliding_window),
                          "full attention in every layer", kHint);
  if (arch.hidden_act != "silu")
    throw MakeConfigError(where, "hidden_act", "gate activation '" + arch.hidden_act + "'", "silu", kHint);
  if (arch.IsMla())
    throw MakeConfigError(where, "kv_lora_rank", "multi-head latent attention", "standard (GQA) attention", kHint);
  if (arch.attn_logit_softcapping != 0 || arch.final_logit_softcapping != 0)
    throw MakeConfigError(where, arch.attn_logit_softcapping != 0 ? "attn_logit_softcapping" : "final_logit_softcapping",
                          "logit soft-capping", "none", kHint);
  if (arch.sandwich_norms || arch.scale_embeddings)
    throw MakeConfigError(where, "model_type",
                          arch.sandwich_norms ? "norms after attention and MLP (Gemma's sandwich norms)"
                                              : "embeddings scaled by sqrt(hidden_size)",
                          "a Llama-style decoder", kHint);
  if (arch.attention_sinks)
    throw MakeConfigError(where, "model_type", "attention sinks (a learned logit per head)", "plain softmax attention",
                          kHint);
}

}  // namespace lifeline::recovery
