#include "recovery/io/hf_checkpoint.hpp"

#include <fstream>
#include <iterator>
#include <set>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "recovery/io/arch_support.hpp"
#include "recovery/io/safetensors.hpp"
#include "common/yaml_util.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;

std::string ShapeString(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace

std::map<std::string, std::vector<int64_t>> ExpectedHfTensorShapes(const ModelArch& a) {
  const int64_t h = a.hidden_size;
  const int64_t hd = a.head_dim > 0 ? a.head_dim
                                    : (a.num_attention_heads > 0 ? h / a.num_attention_heads : 0);
  const int64_t q = a.num_attention_heads * hd;
  const int64_t kv = a.num_key_value_heads * hd;
  const int64_t ff = a.intermediate_size;
  std::map<std::string, std::vector<int64_t>> m;
  m["model.embed_tokens.weight"] = {a.vocab_size, h};
  m["model.norm.weight"] = {h};
  if (!a.tie_word_embeddings) m["lm_head.weight"] = {a.vocab_size, h};
  for (int64_t l = 0; l < a.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    m[p + "input_layernorm.weight"] = {h};
    m[p + "post_attention_layernorm.weight"] = {h};
    m[p + "self_attn.q_proj.weight"] = {q, h};
    m[p + "self_attn.k_proj.weight"] = {kv, h};
    m[p + "self_attn.v_proj.weight"] = {kv, h};
    m[p + "self_attn.o_proj.weight"] = {h, q};
    if (a.attention_bias || a.qkv_bias) {
      m[p + "self_attn.q_proj.bias"] = {q};
      m[p + "self_attn.k_proj.bias"] = {kv};
      m[p + "self_attn.v_proj.bias"] = {kv};
    }
    if (a.attention_bias) m[p + "self_attn.o_proj.bias"] = {h};
    if (a.qk_norm) {
      m[p + "self_attn.q_norm.weight"] = {hd};
      m[p + "self_attn.k_norm.weight"] = {hd};
    }
    m[p + "mlp.gate_proj.weight"] = {ff, h};
    m[p + "mlp.up_proj.weight"] = {ff, h};
    m[p + "mlp.down_proj.weight"] = {h, ff};
    if (a.mlp_bias) {
      m[p + "mlp.gate_proj.bias"] = {ff};
      m[p + "mlp.up_proj.bias"] = {ff};
      m[p + "mlp.down_proj.bias"] = {h};
    }
  }
  return m;
}

HfCheckpoint LoadHfCheckpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ConfigError(fmt::format("{}: not a checkpoint directory (expected config.json and "
                                  "model.safetensors inside)",
                                  dir.string()));
  const fs::path config = dir / "config.json";
  if (!fs::exists(config, ec))
    throw ConfigError(fmt::format("{}: file not found (a Hugging Face checkpoint needs it)",
                                  config.string()));
  HfCheckpoint ck;
  ck.arch = LoadRecoveryModelArch(config);  // refuses what the decoder cannot run

  // Which file each tensor comes from (for error messages).
  std::map<std::string, fs::path> source;
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    for (auto& [name, t] : ReadSafetensors(single)) {
      source[name] = single;
      ck.tensors[name] = std::move(t);
    }
  } else if (fs::exists(index, ec)) {
    nlohmann::json j;
    {
      std::ifstream in(index);
      if (!in) throw ConfigError(fmt::format("{}: cannot open", index.string()));
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      j = ParseJsonStrict(text, index.string());  // duplicate tensor entries are errors
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw ConfigError(fmt::format("{}: key 'weight_map': missing or not an object; expected "
                                    "{{\"weight_map\": {{tensor name: shard file}}}}",
                                    index.string()));
    std::map<std::string, std::set<std::string>> by_shard;  // shard -> tensor names
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw ConfigError(fmt::format("{}: key 'weight_map.{}': shard is not a string",
                                      index.string(), it.key()));
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
          shard == "." || shard == "..")
        throw ConfigError(fmt::format("{}: key 'weight_map.{}': shard '{}' must be a file name "
                                      "inside the checkpoint directory",
                                      index.string(), it.key(), shard));
      by_shard[shard].insert(it.key());
    }
    for (const auto& [shard, names] : by_shard) {
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec))
        throw ConfigError(fmt::format("{}: shard '{}' named by {} is missing",
                                      shard_path.string(), shard, index.string()));
      auto tensors = ReadSafetensors(shard_path);
      for (const std::string& name : names) {
        auto it = tensors.find(name);
        if (it == tensors.end())
          throw ConfigError(fmt::format("{}: tensor '{}' is missing, though {} maps it to this "
                                        "shard",
                                        shard_path.string(), name, index.string()));
        source[name] = shard_path;
        ck.tensors[name] = std::move(it->second);
      }
    }
  } else {
    throw ConfigError(fmt::format("{}: no model.safetensors or model.safetensors.index.json "
                                  "(only safetensors checkpoints are supported)",
                                  dir.string()));
  }

  for (auto& [name, t] : ck.tensors)
    if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != at::kFloat) t = t.to(at::kFloat);

  // The file a missing tensor should have been in.
  const std::string where = fs::exists(single, ec) ? single.string() : index.string();
  auto expected = ExpectedHfTensorShapes(ck.arch);
  if (ck.arch.tie_word_embeddings && ck.tensors.count("lm_head.weight"))
    expected["lm_head.weight"] = {ck.arch.vocab_size, ck.arch.hidden_size};
  for (const auto& [name, shape] : expected) {
    auto it = ck.tensors.find(name);
    if (it == ck.tensors.end())
      throw ConfigError(fmt::format("{}: tensor '{}' is missing; the architecture in {} needs it "
                                    "with shape {}",
                                    where, name, config.string(), ShapeString(shape)));
    if (!at::isFloatingType(it->second.scalar_type())) {
      const at::ScalarType st = it->second.scalar_type();
      const char* code = st == at::kInt ? "I32" : st == at::kLong ? "I64" : st == at::kShort ? "I16"
                         : st == at::kChar ? "I8" : st == at::kByte ? "U8" : st == at::kBool ? "BOOL"
                                                                          : c10::toString(st);
      throw ConfigError(fmt::format("{}: tensor '{}' has dtype {}; model weights must be floating "
                                    "point (F32, F16, BF16 or F64). hint: this loader reads "
                                    "unquantized checkpoints; dequantize the weights first",
                                    source[name].string(), name, code));
    }
    if (it->second.sizes() != at::IntArrayRef(shape))
      throw ConfigError(fmt::format("{}: tensor '{}' has shape {}; the architecture in {} needs {}",
                                    source[name].string(), name, ShapeString(it->second.sizes()),
                                    config.string(), ShapeString(shape)));
  }
  return ck;
}

}  // namespace lifeline::recovery
