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
  bool qkv_bias = false;        // q/k/v (not o) carry biases (Qwen2: implicit in the architecture)
  bool mlp_bias = false;        // gate/up/down (or expert) projections carry biases
  bool qk_norm = false;         // per-head RMSNorm on q and k (Qwen3, Gemma 3)
  double rms_norm_eps = 1e-6;   // RMSNorm epsilon
  double rope_theta = 10000.0;  // RoPE base
  std::string hidden_act = "silu";  // gate activation (silu, gelu_pytorch_tanh, gelu)

  // Gemma 2/3: a norm after attention and another pair around the FFN
  // (input, post_attention, pre_feedforward, post_feedforward: 4 per layer).
  bool sandwich_norms = false;
  bool scale_embeddings = false;       // embeddings multiplied by sqrt(hidden_size)
  double attn_logit_softcapping = 0;   // cap * tanh(score / cap) on attention scores (0 = none)
  double final_logit_softcapping = 0;  // the same on the LM head's logits (0 = none)
  bool attention_sinks = false;        // GPT-OSS: one learned sink logit per head in each softmax

  // Mixture of experts (0 experts = dense FFN).
  int64_t num_local_experts = 0;    // routed experts per MoE layer
  int64_t num_experts_per_tok = 0;  // routed experts selected per token (top-k)
  int64_t moe_intermediate_size = 0;  // inner size of one routed expert (0 = intermediate_size)
  int64_t num_shared_experts = 0;     // experts every token runs (DeepSeek n_shared_experts)
  int64_t shared_expert_intermediate_size = 0;  // inner size of the shared experts together
  bool router_bias = false;           // the router linear carries a bias (GPT-OSS)
  // One entry per layer: true where the FFN is the MoE block (empty = every
  // layer MoE when num_local_experts > 0). From first_k_dense_replace and
  // moe_layer_freq (DeepSeek), decoder_sparse_step and mlp_only_layers (Qwen MoE).
  std::vector<bool> moe_layers;

  // Multi-head latent attention (DeepSeek-V2/V3; kv_lora_rank 0 = none).
  int64_t q_lora_rank = 0;        // rank of the query down-projection (0 = full q_proj)
  int64_t kv_lora_rank = 0;       // width of the compressed KV latent cached per token
  int64_t qk_nope_head_dim = 0;   // per-head query/key part without RoPE
  int64_t qk_rope_head_dim = 0;   // per-head query part with RoPE; the key's is shared by all heads
  int64_t v_head_dim = 0;         // per-head value dimension

  // Sliding-window attention (0 = none).
  int64_t sliding_window = 0;
  // One entry per layer; empty means every layer is full attention.
  std::vector<AttentionKind> layer_types;
  // Warnings from loading (unknown config.json keys); ModelWarnings() adds
  // the context check.
  std::vector<std::string> warnings;

  bool IsMoe() const { return num_local_experts > 0; }
  bool IsMla() const { return kv_lora_rank > 0; }
  bool HasSlidingLayers() const;  // some layer attends over a window only
  // The FFN of `layer` is the MoE block.
  bool LayerIsMoe(int64_t layer) const {
    return IsMoe() && (moe_layers.empty() || moe_layers.at(static_cast<size_t>(layer)));
  }
  int64_t ExpertIntermediateSize() const {
    return moe_intermediate_size > 0 ? moe_intermediate_size : intermediate_size;
  }
  // Elements of the KV cache one token adds to one layer (K and V of every KV
  // head, or the MLA latent plus its shared RoPE key).
  int64_t KvElementsPerTokenPerLayer() const {
    return IsMla() ? kv_lora_rank + qk_rope_head_dim : 2 * num_key_value_heads * head_dim;
  }
  AttentionKind LayerAttention(int64_t layer) const {
    return layer_types.empty() ? AttentionKind::kFull
                               : layer_types.at(static_cast<size_t>(layer));
  }
  // Parameters of the whole model (embedding + layers + LM head, counted once
  // when tied), norms and biases included.
  int64_t ParameterCount() const;
  // The same as ParameterCount(): every parameter stored (all experts).
  int64_t TotalParameterCount() const;
  // Parameters one token uses: everything outside the experts (embedding and
  // LM head included), the top-k routed experts and the shared experts of each
  // MoE layer. Equals TotalParameterCount() for a dense model.
  int64_t ActiveParameterCount() const;
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

// The model_type values lifeline models, sorted ("deepseek_v2", "gemma2", ...).
// Any other model_type is a ConfigError naming the key and listing these.
const std::vector<std::string>& SupportedModelTypes();

// One-line warnings about a model: config.json keys lifeline does not know
// (listed, ignored: they do not change its graph as far as lifeline can
// tell), a context beyond max_position_embeddings. Each names the key.
std::vector<std::string> ModelWarnings(const ModelArch& arch, int64_t context_tokens);

// Loads a model_zoo YAML (strict: unknown keys rejected) or a Hugging Face
// config.json (per model_type: keys that shape the graph are read, keys that
// do not change cost are accepted, a graph-shaping key lifeline cannot model
// is an error, any other unknown key is a warning in ModelArch::warnings).
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
// The same with the position of each key: `where_of(key)`.
void ValidateModelArch(const ModelArch& arch, const std::function<std::string(const std::string&)>& where_of);

// Directory of the shipped model zoo.
std::filesystem::path DefaultModelZooDir();

}  // namespace lifeline
