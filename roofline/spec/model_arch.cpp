#include "roofline/spec/model_arch.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"

namespace lifeline {
namespace {

// ValidateModelArch with the position of each key: `where(key)`.
void ValidateModelArchAt(const ModelArch& a, const std::function<std::string(const std::string&)>& where);

AttentionKind ParseLayerType(const std::string& s, const std::string& where, const std::string& key) {
  if (s == "full_attention") return AttentionKind::kFull;
  if (s == "sliding_attention") return AttentionKind::kSliding;
  throw MakeConfigError(where, key, "unknown layer type '" + s + "'",
                        "'full_attention' or 'sliding_attention'", "");
}

ModelArch FromYaml(const std::filesystem::path& path) {
  return ParseModelArch(LoadYamlFile(path), path.string(), path.stem().string());
}

ModelArch FromYamlNode(const YAML::Node& root, const std::string& file, const std::string& default_name) {
  StrictMap m(root, file);
  ModelArch a;
  a.name = m.OptionalString("name").value_or(default_name);
  m.Allow("source");  // citation of the numbers, documentation only
  a.model_type = m.String("model_type");
  a.hidden_size = m.PositiveInteger("hidden_size");
  a.intermediate_size = m.PositiveInteger("intermediate_size");
  a.num_hidden_layers = m.PositiveInteger("num_hidden_layers");
  a.num_attention_heads = m.PositiveInteger("num_attention_heads");
  a.num_key_value_heads = m.PositiveInteger("num_key_value_heads");
  a.head_dim = m.OptionalInteger("head_dim").value_or(0);
  a.vocab_size = m.PositiveInteger("vocab_size");
  a.max_position_embeddings = m.OptionalInteger("max_position_embeddings").value_or(0);
  a.tie_word_embeddings = m.OptionalBool("tie_word_embeddings").value_or(false);
  a.attention_bias = m.OptionalBool("attention_bias").value_or(false);
  a.mlp_bias = m.OptionalBool("mlp_bias").value_or(false);
  a.rms_norm_eps = m.OptionalNumber("rms_norm_eps").value_or(1e-6);
  a.rope_theta = m.OptionalNumber("rope_theta").value_or(10000.0);
  a.hidden_act = m.OptionalString("hidden_act").value_or("silu");
  a.num_local_experts = m.OptionalInteger("num_local_experts").value_or(0);
  a.num_experts_per_tok = m.OptionalInteger("num_experts_per_tok").value_or(0);
  a.sliding_window = m.OptionalInteger("sliding_window").value_or(0);
  CheckModelLimits(a, [&](const std::string& key) { return m.WhereKey(key); });
  if (m.Has("layer_types")) {
    YAML::Node lt = m.Node("layer_types");
    if (!lt.IsSequence()) {
      throw MakeConfigError(Where(file, lt), "layer_types", "is not a list",
                            "a list with one 'full_attention' or 'sliding_attention' per layer", "");
    }
    if (static_cast<int64_t>(lt.size()) != a.num_hidden_layers) {
      throw MakeConfigError(Where(file, lt), "layer_types",
                            "has " + std::to_string(lt.size()) + " entries for " +
                                std::to_string(a.num_hidden_layers) + " layers",
                            "one entry per layer", "");
    }
    for (const auto& item : lt) {
      a.layer_types.push_back(ParseLayerType(item.as<std::string>(), Where(file, item), "layer_types"));
    }
  }
  m.Finish();
  if (a.head_dim == 0) a.head_dim = a.hidden_size / a.num_attention_heads;
  a.qk_norm = (a.model_type == "qwen3");
  ValidateModelArchAt(a, [&](const std::string& key) { return m.WhereKey(key); });
  return a;
}

ModelArch FromJson(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path);
  if (!in) throw MakeConfigError(file, "", "cannot open file", "a readable config.json", "check the path");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::map<std::string, std::string> key_where;  // top-level key -> file:line:col
  const nlohmann::json j = ParseJsonStrict(text, file, &key_where);
  if (!j.is_object()) throw MakeConfigError(file, "", "not a JSON object", "a Hugging Face config.json", "");
  auto where = [&](const std::string& key) {
    // HF spells some keys differently per family; point at the one present.
    for (const std::string& k : {key, key == "num_local_experts" ? std::string("num_experts")
                                      : key == "num_experts_per_tok" ? std::string("experts_per_token")
                                                                     : std::string()}) {
      if (key_where.count(k)) return key_where.at(k);
    }
    return file;
  };
  auto get_int = [&](const char* key, bool required, int64_t fallback) -> int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) {
        throw MakeConfigError(file, key, "missing required key", "an integer",
                              "is this a Hugging Face config.json of a decoder-only model?");
      }
      return fallback;
    }
    if (!j[key].is_number_integer()) {
      throw MakeConfigError(where(key), key, "is not an integer (" + j[key].dump() + ")", "an integer", "");
    }
    return j[key].get<int64_t>();
  };
  auto get_bool = [&](const char* key, bool fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) throw MakeConfigError(where(key), key, "is not a boolean", "true or false", "");
    return j[key].get<bool>();
  };
  auto get_num = [&](const char* key, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number()) throw MakeConfigError(where(key), key, "is not a number", "a number", "");
    return j[key].get<double>();
  };
  ModelArch a;
  a.name = path.parent_path().filename().string();
  if (a.name.empty() || a.name == ".") a.name = path.stem().string();
  a.model_type = j.value("model_type", std::string("llama"));
  a.hidden_size = get_int("hidden_size", true, 0);
  a.intermediate_size = get_int("intermediate_size", true, 0);
  a.num_hidden_layers = get_int("num_hidden_layers", true, 0);
  a.num_attention_heads = get_int("num_attention_heads", true, 0);
  a.num_key_value_heads = get_int("num_key_value_heads", false, a.num_attention_heads);
  a.head_dim = get_int("head_dim", false, 0);
  a.vocab_size = get_int("vocab_size", true, 0);
  a.max_position_embeddings = get_int("max_position_embeddings", false, 0);
  a.tie_word_embeddings = get_bool("tie_word_embeddings", false);
  a.attention_bias = get_bool("attention_bias", false);
  a.mlp_bias = get_bool("mlp_bias", false);
  a.rms_norm_eps = get_num("rms_norm_eps", 1e-6);
  a.rope_theta = get_num("rope_theta", 10000.0);
  if (j.contains("hidden_act") && j["hidden_act"].is_string()) a.hidden_act = j["hidden_act"].get<std::string>();
  a.num_local_experts = get_int("num_local_experts", false, get_int("num_experts", false, 0));
  a.num_experts_per_tok = get_int("num_experts_per_tok", false, get_int("experts_per_token", false, 0));
  a.sliding_window = get_int("sliding_window", false, 0);
  CheckModelLimits(a, where);
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    if (static_cast<int64_t>(j["layer_types"].size()) != a.num_hidden_layers) {
      throw MakeConfigError(where("layer_types"), "layer_types",
                            "has " + std::to_string(j["layer_types"].size()) + " entries for " +
                                std::to_string(a.num_hidden_layers) + " layers",
                            "one entry per layer", "");
    }
    for (const auto& t : j["layer_types"]) {
      if (!t.is_string()) {
        throw MakeConfigError(where("layer_types"), "layer_types", "an entry is not a string (" + t.dump() + ")",
                              "'full_attention' or 'sliding_attention'", "");
      }
      a.layer_types.push_back(ParseLayerType(t.get<std::string>(), where("layer_types"), "layer_types"));
    }
  }
  // Models such as Qwen2 carry sliding_window with use_sliding_window=false.
  if (j.contains("use_sliding_window") && j["use_sliding_window"].is_boolean() &&
      !j["use_sliding_window"].get<bool>()) {
    a.sliding_window = 0;
  }
  if (a.head_dim == 0 && a.num_attention_heads > 0) a.head_dim = a.hidden_size / a.num_attention_heads;
  a.qk_norm = (a.model_type == "qwen3" || a.model_type == "qwen3_moe");
  ValidateModelArchAt(a, where);
  return a;
}

}  // namespace

ModelArch ParseModelArch(const YAML::Node& root, const std::string& file, const std::string& default_name) {
  return FromYamlNode(root, file, default_name);
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

int64_t ModelArch::ParameterCount() const {
  const int64_t h = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = h * q + 2 * h * kv + q * h;
  if (attention_bias) attn += q + 2 * kv + h;
  if (qk_norm) attn += 2 * head_dim;
  int64_t mlp = 3 * h * intermediate_size + (mlp_bias ? 2 * intermediate_size + h : 0);
  if (IsMoe()) mlp = num_local_experts * mlp + h * num_local_experts + num_local_experts;
  const int64_t layer = attn + mlp + 2 * h;
  return vocab_size * h * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + h;
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
