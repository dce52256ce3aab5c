#include "roofline/spec/model_arch.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "roofline/spec/hf_config.hpp"

namespace lifeline {
namespace {

// ValidateModelArch with the position of each key: `where(key)`.
void ValidateModelArchAt(const ModelArch& a, const std::function<std::string(const std::string&)>& where);

ModelArch FromYaml(const std::filesystem::path& path) {
  return ParseModelArch(LoadYamlFile(path), path.string(), path.stem().string());
}

ModelArch FromJson(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path);
  if (!in) throw MakeConfigError(file, "", "cannot open file", "a readable config.json", "check the path");
  std::stringstream ss;
  ss << in.rdbuf();
  std::map<std::string, std::string> key_where;  // top-level key -> file:line:col
  const nlohmann::json j = ParseJsonStrict(ss.str(), file, &key_where);
  if (!j.is_object()) throw MakeConfigError(file, "", "not a JSON object", "a Hugging Face config.json", "");
  // A Hugging Face directory's config.json is named for its directory.
  std::string name = path.filename() == "config.json" ? path.parent_path().filename().string() : "";
  if (name.empty() || name == ".") name = path.stem().string();
  return ArchFromConfigKeys(ConfigKeysFromJson(j, file, key_where), file, name, /*strict=*/false);
}

}  // namespace

ModelArch ParseModelArch(const YAML::Node& root, const std::string& file, const std::string& default_name) {
  // A missing key is reported at the mapping's position.
  return ArchFromConfigKeys(ConfigKeysFromYaml(root, file), Where(file, root), default_name, /*strict=*/true);
}

void CheckModelLimits(const ModelArch& a, const std::function<std::string(const std::string&)>& where_of) {
  auto cap = [&](int64_t v, const char* key, int64_t limit, const char* unit) {
    if (v > limit) {
      throw MakeConfigError(where_of(key), key,
                            std::to_string(v) + " is beyond the limit of " + std::to_string(limit) + unit,
                            "at most " + std::to_string(limit),
                            "the limits (roofline/README.md, \"Size limits\") are above every published model; a "
                            "larger value is most likely a typo");
    }
  };
  cap(a.num_hidden_layers, "num_hidden_layers", kMaxHiddenLayers, " layers");
  cap(a.hidden_size, "hidden_size", kMaxHiddenSize, "");
  cap(a.intermediate_size, "intermediate_size", kMaxIntermediateSize, "");
  cap(a.num_attention_heads, "num_attention_heads", kMaxAttentionHeads, " heads");
  cap(a.num_key_value_heads, "num_key_value_heads", kMaxAttentionHeads, " heads");
  cap(a.head_dim, "head_dim", kMaxHeadDim, "");
  cap(a.vocab_size, "vocab_size", kMaxVocabSize, " tokens");
  cap(a.num_local_experts, "num_local_experts", kMaxLocalExperts, " experts");
  cap(a.num_experts_per_tok, "num_experts_per_tok", kMaxLocalExperts, " experts");
  cap(a.sliding_window, "sliding_window", kMaxSlidingWindow, " tokens");
  cap(a.moe_intermediate_size, "moe_intermediate_size", kMaxIntermediateSize, "");
  cap(a.num_shared_experts, "num_shared_experts", kMaxLocalExperts, " experts");
  cap(a.q_lora_rank, "q_lora_rank", kMaxHiddenSize, "");
  cap(a.kv_lora_rank, "kv_lora_rank", kMaxHiddenSize, "");
  cap(a.qk_nope_head_dim, "qk_nope_head_dim", kMaxHeadDim, "");
  cap(a.qk_rope_head_dim, "qk_rope_head_dim", kMaxHeadDim, "");
  cap(a.v_head_dim, "v_head_dim", kMaxHeadDim, "");
}

namespace {

void ValidateModelArchAt(const ModelArch& a, const std::function<std::string(const std::string&)>& where) {
  auto need_pos = [&](int64_t v, const char* key) {
    if (v <= 0) {
      throw MakeConfigError(where(key), key, "must be positive, got " + std::to_string(v), "an integer > 0", "");
    }
  };
  need_pos(a.hidden_size, "hidden_size");
  need_pos(a.intermediate_size, "intermediate_size");
  need_pos(a.num_hidden_layers, "num_hidden_layers");
  need_pos(a.num_attention_heads, "num_attention_heads");
  need_pos(a.num_key_value_heads, "num_key_value_heads");
  need_pos(a.head_dim, "head_dim");
  need_pos(a.vocab_size, "vocab_size");
  CheckModelLimits(a, where);
  if (a.num_attention_heads % a.num_key_value_heads != 0) {
    throw MakeConfigError(where("num_key_value_heads"), "num_key_value_heads",
                          std::to_string(a.num_attention_heads) + " attention heads are not divisible by " +
                              std::to_string(a.num_key_value_heads) + " KV heads",
                          "a divisor of num_attention_heads",
                          "grouped-query attention shares each KV head among an equal number of query heads");
  }
  if (a.num_local_experts < 0 || a.num_experts_per_tok < 0) {
    throw MakeConfigError(where("num_local_experts"), "num_local_experts", "negative expert count", "integers >= 0",
                          "");
  }
  if (a.num_local_experts > 0 &&
      (a.num_experts_per_tok <= 0 || a.num_experts_per_tok > a.num_local_experts)) {
    throw MakeConfigError(where("num_experts_per_tok"), "num_experts_per_tok",
                          "got " + std::to_string(a.num_experts_per_tok) + " with " +
                              std::to_string(a.num_local_experts) + " experts",
                          "1 <= num_experts_per_tok <= num_local_experts", "");
  }
  if (!a.layer_types.empty() && static_cast<int64_t>(a.layer_types.size()) != a.num_hidden_layers) {
    throw MakeConfigError(where("layer_types"), "layer_types",
                          "has " + std::to_string(a.layer_types.size()) + " entries for " +
                              std::to_string(a.num_hidden_layers) + " layers",
                          "one entry per layer", "");
  }
  if (a.IsMla() && (a.qk_nope_head_dim <= 0 || a.qk_rope_head_dim <= 0 || a.v_head_dim <= 0)) {
    throw MakeConfigError(where("kv_lora_rank"), "kv_lora_rank", "multi-head latent attention without its head sizes",
                          "qk_nope_head_dim, qk_rope_head_dim and v_head_dim > 0", "");
  }
  if (!a.moe_layers.empty() && static_cast<int64_t>(a.moe_layers.size()) != a.num_hidden_layers) {
    throw InternalError("moe_layers has " + std::to_string(a.moe_layers.size()) + " entries for " +
                        std::to_string(a.num_hidden_layers) + " layers");
  }
  for (auto t : a.layer_types) {
    if (t == AttentionKind::kSliding && a.sliding_window <= 0) {
      throw MakeConfigError(where("sliding_window"), "sliding_window", "sliding_attention layers without a window",
                            "sliding_window > 0", "");
    }
  }
}

}  // namespace

void ValidateModelArch(const ModelArch& a, const std::string& where) {
  ValidateModelArchAt(a, [&](const std::string&) { return where; });
}

void ValidateModelArch(const ModelArch& a, const std::function<std::string(const std::string&)>& where_of) {
  ValidateModelArchAt(a, where_of);
}

bool ModelArch::HasSlidingLayers() const {
  return sliding_window > 0 &&
         std::any_of(layer_types.begin(), layer_types.end(), [](AttentionKind k) { return k == AttentionKind::kSliding; });
}

namespace {

// Parameters of one layer's attention block (projections, biases, q/k norms,
// MLA's latent norms, attention sinks).
int64_t AttentionParams(const ModelArch& a) {
  const int64_t h = a.hidden_size, H = a.num_attention_heads;
  if (a.IsMla()) {
    const int64_t qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    const int64_t q = a.q_lora_rank > 0 ? h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * H * qk : h * H * qk;
    const int64_t kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank +
                       a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim);
    return q + kv + H * a.v_head_dim * h + (a.attention_bias ? H * qk + a.kv_lora_rank + a.qk_rope_head_dim + h : 0);
  }
  const int64_t q = H * a.head_dim, kv = a.num_key_value_heads * a.head_dim;
  int64_t attn = h * q + 2 * h * kv + q * h;
  if (a.attention_bias) attn += q + 2 * kv + h;
  if (a.qkv_bias) attn += q + 2 * kv;
  if (a.qk_norm) attn += 2 * a.head_dim;
  if (a.attention_sinks) attn += H;
  return attn;
}

int64_t FfnParams(const ModelArch& a, int64_t inner, bool bias) {
  return 3 * a.hidden_size * inner + (bias ? 2 * inner + a.hidden_size : 0);
}

// Parameters of the whole model with `routed` routed experts per MoE layer.
int64_t CountParameters(const ModelArch& a, int64_t routed) {
  const int64_t h = a.hidden_size;
  int64_t layers = 0;
  for (int64_t l = 0; l < a.num_hidden_layers; ++l) {
    int64_t ffn = 0;
    if (a.LayerIsMoe(l)) {
      const int64_t E = a.num_local_experts;
      ffn = routed * FfnParams(a, a.ExpertIntermediateSize(), a.mlp_bias) + h * E + (a.router_bias ? E : 0);
      if (a.shared_expert_intermediate_size > 0) ffn += FfnParams(a, a.shared_expert_intermediate_size, false);
    } else {
      ffn = FfnParams(a, a.intermediate_size, a.mlp_bias);
    }
    layers += AttentionParams(a) + ffn + (a.sandwich_norms ? 4 : 2) * h;
  }
  return a.vocab_size * h * (a.tie_word_embeddings ? 1 : 2) + layers + h;
}

}  // namespace

int64_t ModelArch::ParameterCount() const { return CountParameters(*this, num_local_experts); }

int64_t ModelArch::TotalParameterCount() const { return ParameterCount(); }

int64_t ModelArch::ActiveParameterCount() const { return CountParameters(*this, num_experts_per_tok); }

std::vector<std::string> ModelWarnings(const ModelArch& arch, int64_t context_tokens) {
  std::vector<std::string> w = arch.warnings;
  if (arch.max_position_embeddings > 0 && context_tokens > arch.max_position_embeddings) {
    w.push_back("context " + std::to_string(context_tokens) + " tokens is beyond " + arch.name +
                "'s max_position_embeddings of " + std::to_string(arch.max_position_embeddings) +
                ": the model was not built for it (the cost is still computed)");
  }
  return w;
}

std::filesystem::path DefaultModelZooDir() { return ModelZooDir(); }

ModelArch LoadModelArch(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw MakeConfigError(path.string(), "", "file not found", "a model_zoo YAML or a config.json", "check the path");
  }
  if (path.extension() == ".json") return FromJson(path);
  return FromYaml(path);
}

ModelArch ResolveModelArch(const std::string& name_or_path, const std::filesystem::path& zoo_dir) {
  const std::filesystem::path p(name_or_path);
  if (std::filesystem::is_directory(p) && std::filesystem::exists(p / "config.json")) {
    return LoadModelArch(p / "config.json");
  }
  if (std::filesystem::is_regular_file(p)) return LoadModelArch(p);
  const std::filesystem::path zoo = zoo_dir.empty() ? DefaultModelZooDir() : zoo_dir;
  const std::filesystem::path f = zoo / (name_or_path + ".yaml");
  if (std::filesystem::exists(f)) return LoadModelArch(f);
  std::vector<std::string> names;
  if (std::filesystem::is_directory(zoo)) {
    for (const auto& e : std::filesystem::directory_iterator(zoo)) {
      if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string guess = DidYouMean(name_or_path, names);
  throw MakeConfigError("--model", name_or_path, "no such model in " + zoo.string() + " and no such file",
                        "a zoo name (" + list + ") or a path to a YAML/config.json",
                        guess.empty() ? "" : "did you mean '" + guess + "'?");
}

}  // namespace lifeline
