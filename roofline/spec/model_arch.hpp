#pragma once
// ModelArch: the one architecture description both halves of lifeline share.
// The roofline counts its operators; recovery builds a LibTorch model from it.
// Field names follow Hugging Face `config.json` keys.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace lifeline {

// Attention pattern of one decoder layer.
enum class AttentionKind {
  kFull,     // attends over the whole context
  kSliding,  // attends over the last `sliding_window` tokens only
};

struct ModelArch {
  std::string name;            // zoo name or the config file's stem, e.g. "qwen3-4b"
  std::string model_type;      // HF model_type: "llama", "qwen3", "gpt_oss"
  int64_t hidden_size = 0;     // d_model
  int64_t intermediate_size = 0;  // FFN inner size (per expert for MoE)
  int64_t num_hidden_layers = 0;  // decoder layers
  int64_t num_attention_heads = 0;  // query heads
  int64_t num_key_value_heads = 0;  // KV heads (GQA when < query heads)
  int64_t head_dim = 0;        // true per-head dimension
  int64_t vocab_size = 0;      // embedding rows / LM-head columns
  int64_t max_position_embeddings = 0;  // longest context the model supports
  bool tie_word_embeddings = false;  // LM head shares the embedding matrix
  bool attention_bias = false;  // q/k/v/o projections carry biases
  bool mlp_bias = false;        // gate/up/down (or expert) projections carry biases
  bool qk_norm = false;         // per-head RMSNorm on q and k (Qwen3)
  double rms_norm_eps = 1e-6;   // RMSNorm epsilon
  double rope_theta = 10000.0;  // RoPE base
  std::string hidden_act = "silu";  // gate activation

  // Mixture of experts (0 experts = dense FFN).
  int64_t num_local_experts = 0;    // experts per MoE layer
  int64_t num_experts_per_tok = 0;  // experts selected per token (top-k)

  // Sliding-window attention (0 = none).
  int64_t sliding_window = 0;
  // One entry per layer; empty means every layer is full attention.
  std::vector<AttentionKind> layer_types;

  bool IsMoe() const { return num_local_experts > 0; }
  AttentionKind LayerAttention(int64_t layer) const {
    return layer_types.empty() ? AttentionKind::kFull
                               : layer_types.at(static_cast<size_t>(layer));
  }
  // Parameters of the whole model (embedding + layers + LM head, counted once
  // when tied), norms and biases included.
  int64_t ParameterCount() const;
};

// Size limits. Each is well above every published model (the largest have
// ~126 layers, hidden 25600, 262k vocabulary, 384 experts) and low enough that
// a typo cannot make lifeline build a graph of gigabytes; roofline/README.md
// lists them. Values beyond a limit are ConfigErrors naming the key.
inline constexpr int64_t kMaxHiddenLayers = 1024;
inline constexpr int64_t kMaxHiddenSize = 65536;
inline constexpr int64_t kMaxIntermediateSize = 262144;
inline constexpr int64_t kMaxAttentionHeads = 1024;  // query and KV heads
inline constexpr int64_t kMaxHeadDim = 1024;
inline constexpr int64_t kMaxVocabSize = int64_t{1} << 22;  // 4194304
inline constexpr int64_t kMaxLocalExperts = 4096;
inline constexpr int64_t kMaxSlidingWindow = int64_t{1} << 24;  // the context limit

// Throws ConfigError when a size of `arch` is beyond its limit; `where_of(key)`
// names the position of a key in the source.
void CheckModelLimits(const ModelArch& arch, const std::function<std::string(const std::string&)>& where_of);

// Loads a model_zoo YAML (strict: unknown keys rejected) or a Hugging Face
// config.json (lenient on keys HF adds that lifeline does not need).
// Throws ConfigError with file:line:col, key, expectation and hint.
ModelArch LoadModelArch(const std::filesystem::path& path);

// Parses a model_zoo YAML mapping (strict, as LoadModelArch does for a YAML
// file); `file` names the source in errors, `default_name` is used when the
// mapping has no `name`.
ModelArch ParseModelArch(const YAML::Node& root, const std::string& file, const std::string& default_name);

// Resolves a zoo name ("qwen3-4b") or a path to a YAML/config.json file.
// `zoo_dir` defaults to LIFELINE_MODEL_ZOO_DIR or <source>/model_zoo.
ModelArch ResolveModelArch(const std::string& name_or_path,
                           const std::filesystem::path& zoo_dir = {});

// Checks invariants (positive sizes within the limits, heads divisible by KV
// heads, ...).
// `where` names the source for the error message.
void ValidateModelArch(const ModelArch& arch, const std::string& where);

// Directory of the shipped model zoo.
std::filesystem::path DefaultModelZooDir();

}  // namespace lifeline
