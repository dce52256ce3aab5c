#pragma once
// The graph builder's internals, shared by builder.cpp (the step's skeleton,
// linears, norms, LoRA adapters, activation traffic) and layer_blocks.cpp
// (a decoder layer's attention and FFN blocks for each architecture family).
// The operation counts per element are listed at the top of builder.cpp.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "roofline/graph/op_graph.hpp"

namespace lifeline::graph_internal {

constexpr double kActBytes = 2.0;    // BF16 activations
constexpr double kTokenIdBytes = 4.0;  // int32 token ids

// Operations per element (see the table at the top of the file).
constexpr double kMultiplyAddOps = 2.0;        // one multiply-accumulate
constexpr double kDequantOpsPerWeight = 2.0;   // multiply by the scale, add the zero point
constexpr double kRmsNormOps = 4.0;            // square, sum, reciprocal-root scale, weight multiply
constexpr double kRopeOps = 3.0;               // x cos + rotate(x) sin
constexpr double kSoftmaxOps = 5.0;            // scale, subtract max, exp, sum, divide
constexpr double kSwigluOps = 5.0;             // SiLU (exp, add, divide), times gate, times up
constexpr double kCombineOpsPerExpert = 2.0;   // weight multiply and accumulate
constexpr double kResidualAddOps = 1.0;        // one add
constexpr double kSamplingOps = 2.0;           // arg-max: compare and select
constexpr double kGeluTanhOps = 10.0;  // 0.5 x (1 + tanh(c (x + 0.044715 x^3))): 9, times up: 1
constexpr double kGeluErfOps = 6.0;    // 0.5 x (1 + erf(x / sqrt 2)): 5, times up: 1
constexpr double kSoftcapOps = 3.0;    // cap * tanh(x / cap): divide, tanh, multiply
constexpr double kScaleOps = 1.0;      // one multiply (Gemma's sqrt(hidden) embedding scale)

// A tensor produced by an op (or by nobody: a graph input read from memory).
struct Tensor {
  std::string name;
  int id = -1;
  bool has_producer = false;
  OpVertex producer{};
  double bytes = 0;
  double bytes_per_ctx = 0;
};

class Builder {
 public:
  Builder(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& o);

  ModelGraph Build();

 private:
  Tensor Input(const std::string& name, double bytes);
  Tensor Out(OpVertex v, const std::string& name, double bytes, double bytes_per_ctx = 0);
  OpVertex Add(OpNode n, const std::vector<Tensor>& inputs);
  // Attended context length is resolved at evaluation for decode; prefill
  // attends over the prompt (causal) and the `past_tokens` before it,
  // counted here.
  double PrefillPairs(int64_t cap) const;
  // Distinct cached positions a prefill step reads: its own P tokens and the
  // past ones in reach (within the window: the last cap - 1).
  double PrefillKvPositions(int64_t cap) const;

  // The plan's format for a linear with input dimension k; counts the rule's
  // use and checks its group size divides k.
  WeightFormat FormatFor(const std::string& name, int64_t k);

  Tensor Embedding(const Tensor& ids);

  Tensor Norm(const std::string& name, int layer, const Tensor& x, int64_t width, int64_t heads = 0,
              int group = -1);

  // A k -> nout linear on m rows. `out_elems` > 0 sizes its output when it is
  // not m x nout: a per-head product stored as one linear (MLA's absorbed
  // W_UK: heads x (nope -> kv_lora_rank) weights, output heads x kv_lora_rank).
  Tensor Linear(const std::string& name, int layer, const Tensor& x, int64_t m, int64_t k, int64_t nout,
                bool bias, int group = -1, int64_t out_elems = 0);

  // A LoRA adapter on linear `name` (plan `adapters:`). Attached: the shrink
  // A (k x r) and the expand B (r x nout) run as two kernels of their own
  // beside the frozen linear (as Punica / S-LoRA / vLLM run them), B
  // accumulating into the linear's output in place (one add per output
  // element). Merged: folded into the weight, no op; a quantized weight then
  // holds a re-quantized W + B A, which Build() reports in ModelGraph::notes.
  Tensor AttachAdapter(const std::string& name, int layer, const Tensor& x, const Tensor& base, int64_t m, int64_t k,
                       int64_t nout, const WeightFormat& f);

  Tensor Elementwise(const std::string& name, OpKind kind, int layer, const std::vector<Tensor>& in,
                     double elems, double ops_per_elem, int group = -1);

  Tensor Attention(int layer, const Tensor& q, const Tensor& k_new, const Tensor& v_new);

  Tensor Mlp(int layer, const Tensor& x);

  Tensor Layer(int l, const Tensor& h_in);

  // Multi-query/grouped-query attention with per-head q/k/v projections.
  Tensor SelfAttention(int l, const Tensor& n1);

  // Multi-head latent attention (DeepSeek-V2/V3). The cache holds, per
  // position and layer, one latent of kv_lora_rank and one RoPE key of
  // qk_rope_head_dim that all heads share. Decode runs the absorbed form: the
  // key half of kv_b_proj folds into the query (`kv_b_proj.k_absorb`: q_nope
  // into latent space), scores and values are taken against the cached latent
  // itself, and the value half maps the output back (`kv_b_proj.v_absorb`);
  // together they read kv_b_proj's weights once. Prefill expands every prompt
  // position's latent with kv_b_proj and attends per head.
  Tensor MlaAttention(int l, const Tensor& x);

  // The attention Attention() builds: per-head q.k and value widths, and the
  // cached elements per position the scores read, the values read, and in all.
  void SetAttentionShape(int64_t qk_dim, int64_t v_dim, int64_t k_elems, int64_t v_elems, int64_t kv_elems = 0);

  // Gate/up/down with the model's gated activation.
  Tensor DenseFfn(const std::string& p, int layer, const Tensor& x, int64_t inner, bool bias, int group);

  // Operations per element of the gated activation (table at the top).
  double ActOps() const;

  void Sampling(const Tensor& logits, int64_t rows);

  void RefuseExpertAdapter(const std::string& name) const;

  void CheckPlanUse() const;

  // A tensor crossing a fusion-group boundary is written once by its producer
  // and read once by each consuming kernel; inside a group it stays on chip.
  void DeriveActivationTraffic();

  const ModelArch& arch_;
  const QuantPlan& plan_;
  BuildOptions options_;
  OpGraph g_;
  std::vector<int> hits_;
  std::vector<int> adapter_hits_;                     // linears each plan adapter matched
  std::vector<std::set<std::string>> merged_quantized_;  // quantized formats each merged adapter folds into
  std::set<int> group_has_leader_;
  int next_tensor_ = 0;
  int next_group_ = 0;
  int64_t head_dim_ = 0;      // per-head dimension used (hidden / heads in paper fidelity)
  int64_t num_heads_ = 0;     // query heads
  int64_t num_kv_heads_ = 0;  // key/value heads
  int64_t hidden_ = 0;        // hidden size (d_model)
  int64_t batch_ = 1;         // sequences in the step
  int64_t seq_tokens_ = 1;    // tokens of each sequence in the step: the prompt (prefill) or 1 (decode)
  int64_t tokens_ = 1;        // batch_ x seq_tokens_
  double kv_bytes_per_element_ = 2.0;  // of the KV cache's dtype
  // Shape of the attention being built (SetAttentionShape).
  int64_t qk_dim_ = 0;      // per-head q.k dot-product length
  int64_t v_dim_ = 0;       // per-head value width
  int64_t kv_k_elems_ = 0;  // cached elements per position the scores read
  int64_t kv_v_elems_ = 0;  // cached elements per position the values read
  int64_t kv_elems_ = 0;    // cached elements per position per layer (written once, read once fused)
};

}  // namespace lifeline::graph_internal
