#pragma once
// The per-operator graph of one forward step (Boost.Graph). Nodes are
// operators named in Hugging Face / LLM-Viewer vocabulary
// ("layers.12.mlp.gate_proj"); edges are the activation tensors between them.
// Activation traffic is derived from the edges and the fusion groups: a
// tensor that stays inside a fused kernel never touches memory.

#include <boost/graph/adjacency_list.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {

enum class OpKind {
  kEmbedding,    // token id -> row of the embedding table
  kNorm,         // RMSNorm (also per-head q/k norm)
  kLinear,       // (quantized) matrix-vector/matrix product, incl. router and LM head
  kRope,         // rotary position embedding on q and k
  kKvAppend,     // write the new tokens' K and V to the cache
  kAttention,    // fused QK + softmax + PV
  kQkMatmul,     // scores = q K^T (unfused)
  kSoftmax,      // probabilities over the context (unfused)
  kPvMatmul,     // out = P V (unfused)
  kActivation,   // SiLU(gate) * up
  kResidualAdd,  // h + branch
  kTopK,         // router softmax + top-k selection
  kMoeCombine,   // weighted sum of the selected experts' outputs
  kSampling,     // softmax/argmax over the vocabulary
};
std::string OpKindName(OpKind k);

// Which compute efficiency of the device applies.
enum class ComputeClass { kGeneral, kAttention };

// How compute and memory time combine.
enum class Charge {
  kMax,  // roofline: max(compute, memory)
  kSum,  // compute + memory (fused attention, as the paper's tables were made)
};

enum class Fidelity {
  kPaper,  // as the published tables were made: head_dim = hidden/heads, no sliding window
  kExact,  // the true architecture
};
enum class FusionMode {
  kNone,   // every intermediate goes to memory
  kPaper,  // fused attention and fused gate-activation-down keep intermediates on chip
};
enum class Phase { kDecode, kPrefill };

std::string FidelityName(Fidelity f);
std::string FusionModeName(FusionMode f);
Fidelity ParseFidelity(const std::string& s);
FusionMode ParseFusionMode(const std::string& s);

struct OpNode {
  std::string name;   // "layers.3.attn.q_proj"
  OpKind kind = OpKind::kLinear;
  int layer = -1;     // decoder layer, -1 outside the layers
  ComputeClass compute_class = ComputeClass::kGeneral;
  Charge charge = Charge::kMax;
  // Work per step. c = min(context_tokens, context_cap) scales the *_per_ctx terms.
  double flops = 0;              // operations independent of the context
  double flops_per_ctx = 0;      // operations per attended context token
  double expert_unpack_ops = 0;  // MoE expert weight unpacking (one op per weight bit)
  int expert_unpack_bits = 0;    // weight format of that unpacking (selects the device efficiency)
  double weight_bytes = 0;       // packed weight values (+ biases, norm gains)
  double weight_meta_bytes = 0;  // per-group scales and zero points
  // Parameters this op holds in memory when they differ from those it reads in
  // one step (all experts of a MoE layer, the whole embedding table, none for
  // RoPE's per-position rows); unset: weight_bytes + weight_meta_bytes.
  std::optional<double> stored_weight_bytes;
  double act_read_bytes = 0;     // activations read from memory (derived from edges)
  double act_read_bytes_per_ctx = 0;
  double act_write_bytes = 0;    // activations written to memory (derived from edges)
  double act_write_bytes_per_ctx = 0;
  double kv_read_bytes = 0;         // KV cache read, fixed part
  double kv_read_bytes_per_ctx = 0; // KV cache read per attended context token
  double kv_write_bytes = 0;        // KV cache append
  double dispatches = 1;         // kernel launches
  double head_dispatches = 0;    // per-head kernel instances (Qwen3 q/k norm)
  int64_t context_cap = 0;       // sliding window; 0 = whole context
  int fusion_group = -1;         // ops sharing a group run as one kernel
  std::string format;            // weight format label for linears ("INT4 g128")
  // Linears: the weight format whose device efficiency the compute uses
  // (efficiency.linear_compute_<fmt>, default efficiency.compute); unset for other ops.
  std::optional<LinearFormat> linear_format;
  int64_t m = 0, k = 0, n = 0;   // GEMM shape for linears (tokens, in, out)
};

struct TensorEdge {
  std::string tensor;        // "layers.3.attn.q"
  int tensor_id = 0;         // one id per produced tensor (shared by its consumers)
  double bytes = 0;          // size in memory
  double bytes_per_ctx = 0;  // part that grows with the attended context (attention scores)
};

using OpGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, OpNode, TensorEdge>;
using OpVertex = boost::graph_traits<OpGraph>::vertex_descriptor;

struct BuildOptions {
  Fidelity fidelity = Fidelity::kPaper;
  FusionMode fusion = FusionMode::kPaper;
  Phase phase = Phase::kDecode;
  int64_t batch = 1;          // sequences decoded together
  int64_t prompt_tokens = 0;  // prefill length (Phase::kPrefill)
  // Prefill: tokens already in the KV cache before this step, which the
  // prompt's tokens also attend (a later chunk of a chunked prefill, the k+1
  // tokens a speculative-decoding target verifies); 0 = a whole prompt.
  int64_t past_tokens = 0;
  // Prefill: LM head and sampling at every position (a speculative-decoding
  // target scores each drafted token) instead of the last one of each sequence.
  bool all_logits = false;
};

// Run limits, listed in roofline/README.md: far above any deployed context
// (the longest, 10M tokens) or batch, and low enough that every count the
// builder multiplies out stays exact in 64-bit integers.
inline constexpr int64_t kMaxContextTokens = int64_t{1} << 24;  // 16777216, attended context
inline constexpr int64_t kMaxPromptTokens = int64_t{1} << 24;   // 16777216, prefill length
inline constexpr int64_t kMaxBatch = int64_t{1} << 16;          // 65536 sequences
inline constexpr int64_t kMaxTokensPerStep = int64_t{1} << 32;  // batch x prompt tokens

// Throws ConfigError at `where` (a flag, or file:line) for `key` unless
// 1 <= value <= limit; the message states the limit in `unit`.
void CheckRunValue(int64_t value, int64_t limit, const std::string& where, const std::string& key,
                   const std::string& unit);

// A built graph with what it was built from.
struct ModelGraph {
  OpGraph graph;
  ModelArch arch;            // as given
  int64_t head_dim = 0;      // head_dim used (hidden/heads in paper fidelity)
  QuantPlan plan;
  BuildOptions options;
  std::vector<OpVertex> order;  // topological order
  // What the deployed model does differently from the plan as written
  // (adapters merged into quantized weights are re-quantized).
  std::vector<std::string> notes;
};

// The device-efficiency format of a plan weight format: its ggml type when
// it names one, else BF16 (16 bits), F32 (32) or INTb.
LinearFormat LinearFormatOf(const WeightFormat& f);

// Builds the graph and derives activation traffic from the fusion groups.
// Throws ConfigError when a plan rule matches nothing or a group size does not
// divide a linear's input dimension.
ModelGraph BuildModelGraph(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& options);

// Totals over the graph (context-independent parts at context c).
struct GraphTotals {
  double flops = 0, weight_bytes = 0, weight_meta_bytes = 0, act_bytes = 0, kv_read_bytes = 0,
         kv_write_bytes = 0, dispatches = 0;
};
GraphTotals SumGraph(const ModelGraph& g, int64_t context_tokens);

}  // namespace lifeline
