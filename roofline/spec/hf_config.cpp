#include "roofline/spec/hf_config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "common/yaml_util.hpp"

namespace lifeline {
namespace {

using Kind = ConfigValue::Kind;

// Keys every family reads.
const std::vector<std::string> kCommonKeys = {
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
    "rms_norm_eps", "rope_theta", "hidden_act"};
const std::vector<std::string> kQwenSlidingKeys = {"sliding_window", "use_sliding_window", "max_window_layers",
                                                   "layer_types"};
const std::vector<std::string> kGemmaKeys = {"attention_bias", "hidden_activation", "sliding_window",
                                             "sliding_window_size", "attn_logit_softcapping",
                                             "final_logit_softcapping", "layer_types"};
const std::vector<std::string> kDeepseekKeys = {
    "attention_bias", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
    "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size",
    "first_k_dense_replace", "moe_layer_freq", "topk_method"};

// The keys each supported model_type reads beyond kCommonKeys.
const std::map<std::string, std::vector<std::string>>& FamilyKeys() {
  static const auto* m = [] {
    auto* f = new std::map<std::string, std::vector<std::string>>{
        {"llama", {"attention_bias", "mlp_bias"}},
        {"mistral", {"sliding_window", "layer_types"}},
        {"mixtral", {"sliding_window", "layer_types", "num_local_experts", "num_experts_per_tok"}},
        {"qwen2", kQwenSlidingKeys},
        {"qwen3", kQwenSlidingKeys},
        {"qwen3_moe", kQwenSlidingKeys},
        {"gemma2", kGemmaKeys},
        {"gemma3_text", kGemmaKeys},
        {"phi3", {"attention_bias", "sliding_window"}},
        {"gpt_oss", {"attention_bias", "mlp_bias", "num_local_experts", "num_experts_per_tok", "experts_per_token",
                     "sliding_window", "layer_types"}},
        {"deepseek_v2", kDeepseekKeys},
        {"deepseek_v3", kDeepseekKeys},
    };
    (*f)["qwen3"].push_back("attention_bias");
    (*f)["qwen3_moe"].insert((*f)["qwen3_moe"].end(), {"attention_bias", "num_experts", "num_experts_per_tok",
                                                       "moe_intermediate_size", "decoder_sparse_step",
                                                       "mlp_only_layers"});
    (*f)["gemma3_text"].insert((*f)["gemma3_text"].end(), {"sliding_window_pattern", "_sliding_window_pattern"});
    return f;
  }();
  return *m;
}

// Keys that do not change the cost of a step: token ids, dtypes, RoPE scaling
// details, dropout and training-only settings, routing details that keep the
// top-k count, the zoo's own documentation keys.
const std::set<std::string>& CostNeutralKeys() {
  static const std::set<std::string> k = {
      "name", "source", "architectures", "_name_or_path", "auto_map", "bos_token_id", "eos_token_id",
      "pad_token_id", "torch_dtype", "dtype", "transformers_version", "use_cache", "initializer_range",
      "attention_dropout", "rope_scaling", "rope_parameters", "pretraining_tp", "output_router_logits",
      "router_aux_loss_coef", "router_jitter_noise", "aux_loss_alpha", "seq_aux", "cache_implementation",
      "embd_pdrop", "resid_pdrop", "original_max_position_embeddings", "initial_context_length", "use_mrope",
      "norm_topk_prob", "routed_scaling_factor", "scoring_func", "n_group", "topk_group", "ep_size",
      "query_pre_attn_scalar", "rope_local_base_freq", "swiglu_limit", "tokenizer_class", "final_logit_softcap",
      "use_bidirectional_attention", "attn_implementation", "is_decoder"};
  return k;
}

// Keys accepted with a note: they describe something lifeline models elsewhere
// or a part plain decoding does not run.
std::string NotedKey(const std::string& key, const ConfigValue& v) {
  if (key == "quantization_config") {
    return "key 'quantization_config' describes how the checkpoint is stored; lifeline's quantization plan "
           "(--plan) sets the weight formats it models";
  }
  if (key == "num_nextn_predict_layers" && v.kind == Kind::kInt && v.i > 0) {
    return "key 'num_nextn_predict_layers': the " + v.text +
           " multi-token-prediction layer(s) are not counted or modelled (plain decoding does not run them)";
  }
  if (key == "num_nextn_predict_layers") return "-";  // 0 or null: nothing to say
  return "";
}

std::string Supported() {
  std::string s;
  for (const auto& [t, keys] : FamilyKeys()) s += (s.empty() ? "" : ", ") + t;
  return s;
}

// "32 layers" for a count: the unit belongs in the key name.
std::string UnitHint(const ConfigValue& v) {
  if (v.kind != Kind::kString) return "";
  size_t used = 0;
  try {
    (void)std::stod(v.s, &used);
  } catch (const std::exception&) {
    return "";
  }
  if (used == 0 || used >= v.s.size()) return "";
  return "numbers carry no units: the unit is part of the key name; write just " + v.s.substr(0, used);
}

class Reader {
 public:
  Reader(const ConfigKeys& keys, std::string file) : keys_(keys), file_(std::move(file)) {}

  const ConfigValue* Get(const std::string& key) const {
    auto it = keys_.find(key);
    if (it == keys_.end() || it->second.kind == Kind::kNull) return nullptr;
    return &it->second;
  }
  bool Has(const std::string& key) const { return Get(key) != nullptr; }
  std::string WhereOf(const std::string& key) const {
    auto it = keys_.find(key);
    return it == keys_.end() || it->second.where.empty() ? file_ : it->second.where;
  }
  int64_t Int(const std::string& key, bool required, int64_t fallback) const {
    const ConfigValue* v = Get(key);
    if (!v) {
      if (required) throw MakeConfigError(file_, key, "missing required key", "an integer", "");
      return fallback;
    }
    if (v->kind != Kind::kInt) {
      throw MakeConfigError(WhereOf(key), key, "is not an integer (" + v->text + ")", "an integer", UnitHint(*v));
    }
    return v->i;
  }
  double Num(const std::string& key, double fallback) const {
    const ConfigValue* v = Get(key);
    if (!v) return fallback;
    if (v->kind != Kind::kInt && v->kind != Kind::kNumber) {
      throw MakeConfigError(WhereOf(key), key, "is not a number (" + v->text + ")", "a number", UnitHint(*v));
    }
    return v->d;
  }
  bool Bool(const std::string& key, bool fallback) const {
    const ConfigValue* v = Get(key);
    if (!v) return fallback;
    if (v->kind != Kind::kBool) {
      throw MakeConfigError(WhereOf(key), key, "is not a boolean (" + v->text + ")", "true or false", "");
    }
    return v->b;
  }
  std::string Str(const std::string& key, const std::string& fallback) const {
    const ConfigValue* v = Get(key);
    if (!v) return fallback;
    if (v->kind != Kind::kString) {
      throw MakeConfigError(WhereOf(key), key, "is not a string (" + v->text + ")", "a string", "");
    }
    return v->s;
  }
  const std::string& file() const { return file_; }

 private:
  const ConfigKeys& keys_;
  std::string file_;
};

// Checks every key of the config against the family's keys.
void CheckKeys(const ConfigKeys& keys, const std::string& type, const std::string& file, bool strict,
               std::vector<std::string>* warnings) {
  std::set<std::string> mine(kCommonKeys.begin(), kCommonKeys.end());
  const auto& fam = FamilyKeys().at(type);
  mine.insert(fam.begin(), fam.end());
  std::map<std::string, std::set<std::string>> others;  // key -> families reading it
  for (const auto& [t, ks] : FamilyKeys()) {
    for (const auto& k : ks) others[k].insert(t);
  }
  std::vector<std::string> known(mine.begin(), mine.end());
  known.insert(known.end(), CostNeutralKeys().begin(), CostNeutralKeys().end());
  for (const auto& [key, v] : keys) {
    if (mine.count(key) || CostNeutralKeys().count(key)) continue;
    const std::string note = NotedKey(key, v);
    if (note == "-") continue;
    if (!note.empty()) {
      warnings->push_back(file + ": " + note);
      continue;
    }
    if (others.count(key)) {
      if (v.kind == Kind::kNull) continue;
      std::string fams;
      for (const auto& t : others.at(key)) fams += (fams.empty() ? "" : ", ") + t;
      throw MakeConfigError(v.where.empty() ? file : v.where, key,
                            "is part of the " + fams + " architecture(s), not of model_type '" + type +
                                "': lifeline would have to ignore it and model a different network",
                            "the keys of model_type '" + type + "'",
                            "check model_type, or remove the key if the model really is a plain " + type);
    }
    if (strict) {
      const std::string guess = DidYouMean(key, known);
      throw MakeConfigError(v.where.empty() ? file : v.where, key, "unknown key for model_type '" + type + "'",
                            "one of the keys listed in model_zoo/README.md",
                            guess.empty() ? "" : "did you mean '" + guess + "'?");
    }
    warnings->push_back(v.where.empty() ? file : v.where);
    warnings->back() += ": key '" + key + "' is not known to lifeline for model_type '" + type +
                        "' and is ignored (it is not one lifeline knows to change the graph)";
  }
}

std::vector<AttentionKind> ReadLayerTypes(const Reader& r, const ConfigKeys& keys, int64_t layers) {
  std::vector<AttentionKind> out;
  const ConfigValue* v = r.Get("layer_types");
  if (!v) return out;
  if (v->kind != Kind::kList) {
    throw MakeConfigError(r.WhereOf("layer_types"), "layer_types", "is not a list",
                          "a list with one 'full_attention' or 'sliding_attention' per layer", "");
  }
  if (static_cast<int64_t>(v->list.size()) != layers) {
    throw MakeConfigError(r.WhereOf("layer_types"), "layer_types",
                          "has " + std::to_string(v->list.size()) + " entries for " + std::to_string(layers) +
                              " layers",
                          "one entry per layer", "");
  }
  for (const auto& e : v->list) {
    const std::string where = e.where.empty() ? r.WhereOf("layer_types") : e.where;
    if (e.kind != Kind::kString) {
      throw MakeConfigError(where, "layer_types", "an entry is not a string (" + e.text + ")",
                            "'full_attention' or 'sliding_attention'", "");
    }
    if (e.s == "full_attention") {
      out.push_back(AttentionKind::kFull);
    } else if (e.s == "sliding_attention") {
      out.push_back(AttentionKind::kSliding);
    } else {
      throw MakeConfigError(where, "layer_types", "unknown layer type '" + e.s + "'",
                            "'full_attention' or 'sliding_attention'", "");
    }
  }
  (void)keys;
  return out;
}

std::vector<AttentionKind> Pattern(int64_t layers, const std::function<bool(int64_t)>& sliding) {
  std::vector<AttentionKind> out;
  for (int64_t i = 0; i < layers; ++i) out.push_back(sliding(i) ? AttentionKind::kSliding : AttentionKind::kFull);
  return out;
}

void ReadAttentionLayout(const Reader& r, const ConfigKeys& keys, ModelArch& a) {
  const std::string& t = a.model_type;
  const int64_t L = a.num_hidden_layers;
  a.layer_types = ReadLayerTypes(r, keys, L);
  const bool qwen = t == "qwen2" || t == "qwen3" || t == "qwen3_moe";
  if (qwen && !r.Bool("use_sliding_window", false)) {
    // HF sets the window to None unless use_sliding_window is true.
    a.sliding_window = 0;
    return;
  }
  if (!a.layer_types.empty() || a.sliding_window <= 0) return;
  if (qwen) {
    const int64_t first = r.Int("max_window_layers", false, L);
    a.layer_types = Pattern(L, [&](int64_t i) { return i >= first; });
  } else if (t == "mistral" || t == "mixtral" || t == "phi3") {
    a.layer_types = Pattern(L, [](int64_t) { return true; });
  } else if (t == "gemma2" || t == "gpt_oss") {
    a.layer_types = Pattern(L, [](int64_t i) { return (i + 1) % 2 != 0; });
  } else if (t == "gemma3_text") {
    const int64_t p = r.Int("sliding_window_pattern", false, r.Int("_sliding_window_pattern", false, 6));
    if (p <= 0) {
      throw MakeConfigError(r.WhereOf("sliding_window_pattern"), "sliding_window_pattern", "must be positive",
                            "an integer >= 1 (every p-th layer is global)", "");
    }
    a.layer_types = Pattern(L, [&](int64_t i) { return (i + 1) % p != 0; });
  }
}

void ReadMoe(const Reader& r, ModelArch& a) {
  const std::string& t = a.model_type;
  const int64_t L = a.num_hidden_layers;
  if (t == "mixtral" || t == "gpt_oss") {
    a.num_local_experts = r.Int("num_local_experts", true, 0);
    a.num_experts_per_tok = r.Int("num_experts_per_tok", false, r.Int("experts_per_token", false, 0));
    if (r.Has("num_experts_per_tok") && r.Has("experts_per_token") &&
        r.Int("num_experts_per_tok", false, 0) != r.Int("experts_per_token", false, 0)) {
      throw MakeConfigError(r.WhereOf("experts_per_token"), "experts_per_token",
                            "differs from num_experts_per_tok", "the same top-k in both keys", "");
    }
    if (a.num_local_experts <= 0) {
      throw MakeConfigError(r.WhereOf("num_local_experts"), "num_local_experts",
                            "is " + std::to_string(a.num_local_experts) + ": " + t + " is a mixture-of-experts model",
                            "at least 1 expert", "a dense model is not a " + t + " model");
    }
    a.router_bias = t == "gpt_oss";
  } else if (t == "qwen3_moe") {
    a.num_local_experts = r.Int("num_experts", true, 0);
    if (a.num_local_experts <= 0) {
      throw MakeConfigError(r.WhereOf("num_experts"), "num_experts",
                            "is " + std::to_string(a.num_local_experts) + ": qwen3_moe is a mixture-of-experts model",
                            "at least 1 expert", "a dense Qwen3 is model_type qwen3");
    }
    a.num_experts_per_tok = r.Int("num_experts_per_tok", true, 0);
    a.moe_intermediate_size = r.Int("moe_intermediate_size", true, 0);
    const int64_t step = r.Int("decoder_sparse_step", false, 1);
    if (step <= 0) {
      throw MakeConfigError(r.WhereOf("decoder_sparse_step"), "decoder_sparse_step", "must be positive",
                            "an integer >= 1", "");
    }
    std::set<int64_t> dense;
    if (const ConfigValue* v = r.Get("mlp_only_layers")) {
      if (v->kind != Kind::kList) {
        throw MakeConfigError(r.WhereOf("mlp_only_layers"), "mlp_only_layers", "is not a list",
                              "a list of layer indices", "");
      }
      for (const auto& e : v->list) {
        if (e.kind != Kind::kInt || e.i < 0 || e.i >= L) {
          throw MakeConfigError(r.WhereOf("mlp_only_layers"), "mlp_only_layers",
                                "entry " + e.text + " is not a layer index", "integers in 0.." + std::to_string(L - 1),
                                "");
        }
        dense.insert(e.i);
      }
    }
    for (int64_t i = 0; i < L; ++i) a.moe_layers.push_back(!dense.count(i) && (i + 1) % step == 0);
  } else if (t == "deepseek_v2" || t == "deepseek_v3") {
    a.num_local_experts = r.Int("n_routed_experts", false, 0);
    if (a.num_local_experts == 0) return;
    a.num_experts_per_tok = r.Int("num_experts_per_tok", true, 0);
    a.moe_intermediate_size = r.Int("moe_intermediate_size", true, 0);
    a.num_shared_experts = r.Int("n_shared_experts", false, 0);
    a.shared_expert_intermediate_size = a.num_shared_experts * a.moe_intermediate_size;
    const int64_t first = r.Int("first_k_dense_replace", false, 0);
    const int64_t freq = r.Int("moe_layer_freq", false, 1);
    if (first < 0 || freq <= 0) {
      throw MakeConfigError(r.WhereOf(first < 0 ? "first_k_dense_replace" : "moe_layer_freq"),
                            first < 0 ? "first_k_dense_replace" : "moe_layer_freq", "out of range",
                            "first_k_dense_replace >= 0, moe_layer_freq >= 1", "");
    }
    for (int64_t i = 0; i < L; ++i) a.moe_layers.push_back(i >= first && i % freq == 0);
    // noaux_tc routing adds a per-expert score-correction bias to the gate.
    a.router_bias = r.Str("topk_method", "") == "noaux_tc";
  }
}

void ReadMla(const Reader& r, ModelArch& a) {
  a.q_lora_rank = r.Int("q_lora_rank", false, 0);
  a.kv_lora_rank = r.Int("kv_lora_rank", true, 0);
  a.qk_nope_head_dim = r.Int("qk_nope_head_dim", true, 0);
  a.qk_rope_head_dim = r.Int("qk_rope_head_dim", true, 0);
  a.v_head_dim = r.Int("v_head_dim", true, 0);
  for (const char* k : {"kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}) {
    if (r.Int(k, true, 0) <= 0) {
      throw MakeConfigError(r.WhereOf(k), k, "must be positive", "an integer > 0",
                            "multi-head latent attention needs every one of its dimensions");
    }
  }
  if (a.q_lora_rank < 0) {
    throw MakeConfigError(r.WhereOf("q_lora_rank"), "q_lora_rank", "is negative", "null or an integer > 0", "");
  }
  a.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim;
}

ConfigValue FromJsonValue(const nlohmann::json& v, const std::string& where) {
  ConfigValue c;
  c.where = where;
  c.text = v.dump();
  if (v.is_null()) {
    c.kind = Kind::kNull;
  } else if (v.is_boolean()) {
    c.kind = Kind::kBool;
    c.b = v.get<bool>();
  } else if (v.is_number_integer()) {
    c.kind = Kind::kInt;
    c.i = v.get<int64_t>();
    c.d = static_cast<double>(c.i);
  } else if (v.is_number()) {
    c.kind = Kind::kNumber;
    c.d = v.get<double>();
  } else if (v.is_string()) {
    c.kind = Kind::kString;
    c.s = v.get<std::string>();
  } else if (v.is_array()) {
    c.kind = Kind::kList;
    for (const auto& e : v) c.list.push_back(FromJsonValue(e, where));
  } else {
    c.kind = Kind::kMap;
  }
  return c;
}

ConfigValue FromYamlValue(const YAML::Node& n, const std::string& file) {
  ConfigValue c;
  c.where = Where(file, n);
  if (n.IsSequence()) {
    c.kind = Kind::kList;
    c.text = "[...]";
    for (const auto& e : n) c.list.push_back(FromYamlValue(e, file));
    return c;
  }
  if (n.IsMap()) {
    c.kind = Kind::kMap;
    c.text = "{...}";
    return c;
  }
  if (!n.IsScalar()) return c;
  const std::string s = n.Scalar();
  c.text = s;
  c.s = s;
  c.kind = Kind::kString;
  if (n.Tag() == "!") return c;  // quoted: a string
  if (s == "null" || s == "~" || s.empty()) {
    c.kind = Kind::kNull;
  } else if (s == "true" || s == "false") {
    c.kind = Kind::kBool;
    c.b = s == "true";
  } else {
    int64_t iv = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), iv);
    if (ec == std::errc() && p == s.data() + s.size()) {
      c.kind = Kind::kInt;
      c.i = iv;
      c.d = static_cast<double>(iv);
      return c;
    }
    char* end = nullptr;
    const double dv = std::strtod(s.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(dv)) {
      c.kind = Kind::kNumber;
      c.d = dv;
    }
  }
  return c;
}

}  // namespace

const std::vector<std::string>& SupportedModelTypes() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> t;
    for (const auto& [name, keys] : FamilyKeys()) t.push_back(name);
    return t;
  }();
  return types;
}

ConfigKeys ConfigKeysFromJson(const nlohmann::json& j, const std::string& file,
                              const std::map<std::string, std::string>& key_where) {
  ConfigKeys keys;
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto w = key_where.find(it.key());
    keys[it.key()] = FromJsonValue(it.value(), w == key_where.end() ? file : w->second);
  }
  return keys;
}

ConfigKeys ConfigKeysFromYaml(const YAML::Node& root, const std::string& file) {
  if (!root.IsMap()) throw MakeConfigError(Where(file, root), "", "is not a mapping", "a model_zoo YAML mapping", "");
  ConfigKeys keys;
  for (const auto& kv : root) {
    ConfigValue v = FromYamlValue(kv.second, file);
    v.where = Where(file, kv.first);
    keys[kv.first.as<std::string>()] = v;
  }
  return keys;
}

ModelArch ArchFromConfigKeys(const ConfigKeys& keys, const std::string& file, const std::string& name, bool strict) {
  Reader r(keys, file);
  ModelArch a;
  a.name = strict ? r.Str("name", name) : name;
  const ConfigValue* mt = r.Get("model_type");
  if (!mt || mt->kind != Kind::kString || !FamilyKeys().count(mt->s)) {
    const std::string problem = !mt                          ? "missing"
                                : mt->kind != Kind::kString  ? "is not a string (" + mt->text + ")"
                                : mt->s == "gemma3"
                                    ? "'gemma3' is the multimodal wrapper (a vision tower lifeline does not model)"
                                    : "model_type '" + mt->s + "' is not supported";
    throw MakeConfigError(mt ? r.WhereOf("model_type") : file, "model_type", problem,
                          "one of: " + Supported(),
                          mt && mt->kind == Kind::kString && mt->s == "gemma3"
                              ? "save its text_config as a config.json of model_type gemma3_text"
                              : "lifeline models only these decoder families; a different architecture would get "
                                "a silently wrong cost");
  }
  a.model_type = mt->s;
  const std::string& t = a.model_type;
  CheckKeys(keys, t, file, strict, &a.warnings);
  const bool gemma = t == "gemma2" || t == "gemma3_text";
  const bool g3 = t == "gemma3_text";
  a.hidden_size = r.Int("hidden_size", true, 0);
  a.intermediate_size = r.Int("intermediate_size", true, 0);
  a.num_hidden_layers = r.Int("num_hidden_layers", true, 0);
  a.num_attention_heads = r.Int("num_attention_heads", !g3, 8);  // Gemma3TextConfig defaults
  a.num_key_value_heads = r.Int("num_key_value_heads", false, g3 ? 4 : a.num_attention_heads);
  a.head_dim = r.Int("head_dim", false, g3 ? 256 : 0);
  a.vocab_size = r.Int("vocab_size", !g3, 262208);
  a.max_position_embeddings = r.Int("max_position_embeddings", false, g3 ? 131072 : 0);
  a.tie_word_embeddings = r.Bool("tie_word_embeddings", gemma);
  a.rms_norm_eps = r.Num("rms_norm_eps", 1e-6);
  a.rope_theta = r.Num("rope_theta", 10000.0);
  a.hidden_act = gemma ? r.Str("hidden_activation", r.Str("hidden_act", "gelu_pytorch_tanh"))
                       : r.Str("hidden_act", "silu");
  static const std::set<std::string> acts = {"silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new"};
  if (!acts.count(a.hidden_act)) {
    const std::string key = gemma && r.Has("hidden_activation") ? "hidden_activation" : "hidden_act";
    throw MakeConfigError(r.WhereOf(key), key, "activation '" + a.hidden_act + "' is not modelled",
                          "silu, swish, gelu, gelu_pytorch_tanh or gelu_new", "");
  }
  const bool oss = t == "gpt_oss";
  a.attention_bias = r.Bool("attention_bias", oss);
  a.mlp_bias = r.Bool("mlp_bias", oss);
  a.qkv_bias = t == "qwen2";
  a.qk_norm = t == "qwen3" || t == "qwen3_moe" || g3;
  a.attention_sinks = oss;
  a.sandwich_norms = gemma;
  a.scale_embeddings = gemma;
  if (gemma) {
    a.attn_logit_softcapping = r.Num("attn_logit_softcapping", 0.0);
    a.final_logit_softcapping = r.Num("final_logit_softcapping", 0.0);
  }
  a.sliding_window = r.Int("sliding_window", false, gemma ? r.Int("sliding_window_size", false, 4096) : 0);
  if (t == "deepseek_v2" || t == "deepseek_v3") ReadMla(r, a);
  if (a.head_dim == 0 && a.num_attention_heads > 0) a.head_dim = a.hidden_size / a.num_attention_heads;
  auto where = [&](const std::string& key) {
    static const std::map<std::string, std::vector<std::string>> aliases = {
        {"num_local_experts", {"num_local_experts", "num_experts", "n_routed_experts"}},
        {"num_experts_per_tok", {"num_experts_per_tok", "experts_per_token"}},
        {"num_shared_experts", {"n_shared_experts"}}};
    auto it = aliases.find(key);
    if (it != aliases.end()) {
      for (const auto& k : it->second) {
        if (keys.count(k)) return r.WhereOf(k);
      }
    }
    return r.WhereOf(key);
  };
  CheckModelLimits(a, where);  // before the per-layer lists are built
  ReadAttentionLayout(r, keys, a);
  ReadMoe(r, a);
  CheckModelLimits(a, where);
  ValidateModelArch(a, where);
  return a;
}

}  // namespace lifeline
