// Graph builders: one decoder-layer builder covering the dense (Llama, Qwen3)
// and mixture-of-experts (GPT-OSS) families, plus embedding, final norm, LM
// head and sampling.
//
// Operation counts per element (the constants below; roofline/README.md,
// "Operation counts", lists them with the same reasoning):
//   linear         2 per multiply-accumulate (2 m k n), plus, for the paper's
//                  INTb formats, one dequantisation multiply-add (2) per weight
//   RMSNorm        4: square, sum, scale by the reciprocal root, weight multiply
//   RoPE           3: x cos + rotate(x) sin = 2 multiplies + 1 add
//   attention      4 head_dim per (query, key) pair and head: q.k and p.v dot
//                  products, a multiply and an add per element each; plus 5 for
//                  the softmax of each score
//   softmax        5: scale, subtract the row max, exp, sum, divide
//   SwiGLU         5: SiLU(gate) = gate * sigmoid(gate), the sigmoid
//                  1 / (1 + exp(-gate)) is 3 (exp, add, divide), times gate
//                  and times up are 2 more
//   router top-k   5 per expert logit: its softmax, counted as above
//   MoE combine    2 per selected expert: weight multiply and accumulate
//   residual add   1
//   sampling       2 per vocabulary logit: the arg-max's compare and select
//   expert unpack  1 per weight bit of the selected experts' low-bit weights

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <boost/graph/topological_sort.hpp>

#include "common/error.hpp"
#include "roofline/graph/op_graph.hpp"

#include "roofline/graph/builder_internal.hpp"

namespace lifeline {
namespace graph_internal {

Builder::Builder(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& o)
    : arch_(arch), plan_(plan), options_(o), hits_(plan.rules.size(), 0),
      adapter_hits_(plan.adapters.size(), 0), merged_quantized_(plan.adapters.size()) {
  if (o.batch <= 0) throw MakeConfigError("--batch", "batch", "must be positive", "an integer >= 1", "");
  if (o.phase == Phase::kPrefill && o.prompt_tokens <= 0) {
    throw MakeConfigError("--prompt", "prompt_tokens", "must be positive for prefill", "an integer >= 1", "");
  }
  CheckRunValue(o.batch, kMaxBatch, "--batch", "batch", "sequences");
  if (o.phase == Phase::kPrefill) {
    CheckRunValue(o.prompt_tokens, kMaxPromptTokens, "--prompt", "prompt_tokens", "tokens");
    if (o.past_tokens < 0 || o.past_tokens > kMaxContextTokens) {
      throw MakeConfigError("past_tokens", "past_tokens", "must be in 0.." + std::to_string(kMaxContextTokens),
                            "cached tokens before the prefill step", "");
    }
    if (o.batch * o.prompt_tokens > kMaxTokensPerStep) {
      throw MakeConfigError("--prompt", "prompt_tokens",
                            "batch " + std::to_string(o.batch) + " x prompt " + std::to_string(o.prompt_tokens) +
                                " tokens is beyond the limit of " + std::to_string(kMaxTokensPerStep) +
                                " tokens per step",
                            "batch x prompt <= " + std::to_string(kMaxTokensPerStep), "lower --batch or --prompt");
    }
  }
  head_dim_ = o.fidelity == Fidelity::kPaper ? arch_.hidden_size / arch_.num_attention_heads : arch_.head_dim;
  num_heads_ = arch_.num_attention_heads;
  num_kv_heads_ = arch_.num_key_value_heads;
  hidden_ = arch_.hidden_size;
  batch_ = o.batch;
  seq_tokens_ = o.phase == Phase::kPrefill ? o.prompt_tokens : 1;
  tokens_ = batch_ * seq_tokens_;
  kv_bytes_per_element_ = KvBytesPerElement(plan.kv_dtype);
  SetAttentionShape(head_dim_, head_dim_, num_kv_heads_ * head_dim_, num_kv_heads_ * head_dim_);
}

ModelGraph Builder::Build() {
  Tensor ids = Input("input_ids", static_cast<double>(tokens_) * kTokenIdBytes);
  Tensor h = Embedding(ids);
  for (int64_t l = 0; l < arch_.num_hidden_layers; ++l) h = Layer(static_cast<int>(l), h);
  Tensor n = Norm("model.norm", -1, h, hidden_);
  // Prefill computes logits for the last position of each sequence only
  // (every position with `all_logits`).
  const int64_t logit_rows = options_.all_logits ? tokens_ : batch_;
  Tensor last = n;
  last.bytes = static_cast<double>(logit_rows * hidden_) * kActBytes;
  Tensor logits = Linear("lm_head", -1, last, logit_rows, hidden_, arch_.vocab_size, false);
  if (arch_.final_logit_softcapping > 0) {
    logits = Elementwise("lm_head.softcap", OpKind::kActivation, -1, {logits}, logits.bytes / kActBytes, kSoftcapOps);
  }
  Sampling(logits, logit_rows);
  CheckPlanUse();
  DeriveActivationTraffic();
  ModelGraph mg;
  mg.graph = std::move(g_);
  mg.arch = arch_;
  mg.head_dim = head_dim_;
  mg.plan = plan_;
  mg.options = options_;
  for (size_t a = 0; a < plan_.adapters.size(); ++a) {
    if (merged_quantized_[a].empty()) continue;
    std::string formats;
    for (const auto& f : merged_quantized_[a]) formats += (formats.empty() ? "" : ", ") + f;
    mg.notes.push_back("merged adapters on quantized linears: the deployed plan re-quantizes W + B A to " + formats +
                       " on the linears matching '" + plan_.adapters[a].pattern +
                       "'; this is a different model than the one trained (attach the adapters to keep it)");
  }
  std::vector<OpVertex> rev;
  boost::topological_sort(mg.graph, std::back_inserter(rev));
  mg.order.assign(rev.rbegin(), rev.rend());
  return mg;
}

Tensor Builder::Input(const std::string& name, double bytes) {
  Tensor t;
  t.name = name;
  t.id = next_tensor_++;
  t.bytes = bytes;
  return t;
}

Tensor Builder::Out(OpVertex v, const std::string& name, double bytes, double bytes_per_ctx) {
  Tensor t = Input(name, bytes);
  t.has_producer = true;
  t.producer = v;
  t.bytes_per_ctx = bytes_per_ctx;
  return t;
}

OpVertex Builder::Add(OpNode n, const std::vector<Tensor>& inputs) {
  if (n.fusion_group >= 0) {
    // One kernel launch per fused group: the first op dispatches it.
    if (!group_has_leader_.insert(n.fusion_group).second) n.dispatches = 0;
  }
  OpVertex v = boost::add_vertex(n, g_);
  for (const auto& t : inputs) {
    if (t.has_producer) {
      boost::add_edge(t.producer, v, TensorEdge{t.name, t.id, t.bytes, t.bytes_per_ctx}, g_);
    } else {
      g_[v].act_read_bytes += t.bytes;  // graph input read from memory
    }
  }
  return v;
}

double Builder::PrefillPairs(int64_t cap) const {
  // sum over the step's positions p = past+1..past+P of min(p, cap)
  const int64_t past = options_.past_tokens;
  if (cap <= 0) {
    return static_cast<double>(seq_tokens_) * static_cast<double>(past) +
           static_cast<double>(seq_tokens_) * static_cast<double>(seq_tokens_ + 1) / 2.0;
  }
  const int64_t below = std::clamp<int64_t>(cap - past, 0, seq_tokens_);  // positions with p <= cap
  return static_cast<double>(below) * static_cast<double>(past) +
         static_cast<double>(below) * static_cast<double>(below + 1) / 2.0 +
         static_cast<double>(seq_tokens_ - below) * static_cast<double>(cap);
}

double Builder::PrefillKvPositions(int64_t cap) const {
  const int64_t past = options_.past_tokens;
  return static_cast<double>(seq_tokens_ + (cap > 0 ? std::min(past, cap - 1) : past));
}

WeightFormat Builder::FormatFor(const std::string& name, int64_t k) {
  int rule = -1;
  const WeightFormat f = plan_.FormatFor(name, &rule);
  if (rule < 0) return f;
  ++hits_[static_cast<size_t>(rule)];
  if (f.Quantized() && k % f.group_size != 0) {
    const QuantRule& r = plan_.rules[static_cast<size_t>(rule)];
    if (f.ggml) {
      throw MakeConfigError(r.where, "format",
                            std::string("a ") + GgmlLayout(*f.ggml).name + " block holds " +
                                std::to_string(f.group_size) + " weights of a row, which does not divide the input "
                                "dimension " + std::to_string(k) + " of " + name + " (pattern '" + r.pattern + "')",
                            "a format whose block divides " + std::to_string(k),
                            "k-quants (q2_k, q3_k, q4_k) need rows of a multiple of 256; q4_0/q8_0 of 32; f16/f32 any");
    }
    throw MakeConfigError(r.where, "group_size",
                          "group size " + std::to_string(f.group_size) + " does not divide the input dimension " +
                              std::to_string(k) + " of " + name + " (pattern '" + r.pattern + "')",
                          "a divisor of " + std::to_string(k),
                          "use a power of two that divides every matched layer's input, e.g. 32, 64 or 128");
  }
  return f;
}

Tensor Builder::Embedding(const Tensor& ids) {
  OpNode n;
  n.name = "model.embed_tokens";
  n.kind = OpKind::kEmbedding;
  n.weight_bytes = static_cast<double>(tokens_ * hidden_) * kActBytes;  // one BF16 row per token
  n.stored_weight_bytes = static_cast<double>(arch_.vocab_size * hidden_) * kActBytes;  // the whole table
  n.format = "BF16 rows";
  if (arch_.scale_embeddings) n.flops = kScaleOps * static_cast<double>(tokens_ * hidden_);
  OpVertex v = Add(n, {ids});
  return Out(v, "model.embed_tokens.out", static_cast<double>(tokens_ * hidden_) * kActBytes);
}

Tensor Builder::Norm(const std::string& name, int layer, const Tensor& x, int64_t width, int64_t heads,
            int group) {
  OpNode n;
  n.name = name;
  n.kind = OpKind::kNorm;
  n.layer = layer;
  const double elems = static_cast<double>(tokens_) * static_cast<double>(width) * (heads > 0 ? heads : 1);
  n.flops = kRmsNormOps * elems;
  n.weight_bytes = static_cast<double>(width) * kActBytes;
  n.fusion_group = group;
  if (heads > 0) {
    // Per-head norm (Qwen3 q_norm/k_norm): one kernel instance per head.
    n.dispatches = 0;
    n.head_dispatches = static_cast<double>(heads);
  }
  OpVertex v = Add(n, {x});
  return Out(v, name + ".out", elems * kActBytes);
}

Tensor Builder::Linear(const std::string& name, int layer, const Tensor& x, int64_t m, int64_t k, int64_t nout,
              bool bias, int group, int64_t out_elems) {
  const WeightFormat f = FormatFor(name, k);
  OpNode n;
  n.name = name;
  n.kind = OpKind::kLinear;
  n.layer = layer;
  n.m = m;
  n.k = k;
  n.n = nout;
  const double w = static_cast<double>(k) * static_cast<double>(nout);
  // The paper's INTb formats carry one dequantisation multiply-add per
  // weight; a ggml layout's dequantisation cost is its per-format linear
  // efficiency instead (what `lifeline probe` measures per format), so its
  // flops are the product's alone.
  n.flops = kMultiplyAddOps * static_cast<double>(m) * w +
            (f.Quantized() && !f.ggml ? kDequantOpsPerWeight * w : 0.0);
  n.weight_bytes = f.Quantized() || f.ggml ? f.ValueBytes(w) : w * kActBytes;
  if (bias) n.weight_bytes += static_cast<double>(nout) * kActBytes;
  n.weight_meta_bytes = f.MetadataBytes(w);
  n.format = f.Label();
  n.linear_format = LinearFormatOf(f);
  n.fusion_group = group;
  OpVertex v = Add(n, {x});
  const int64_t produced = out_elems > 0 ? out_elems : m * nout;
  return AttachAdapter(name, layer, x, Out(v, name + ".out", static_cast<double>(produced) * kActBytes), m, k,
                       nout, f);
}

Tensor Builder::AttachAdapter(const std::string& name, int layer, const Tensor& x, const Tensor& base, int64_t m, int64_t k,
                     int64_t nout, const WeightFormat& f) {
  const int ai = MatchAdapter(plan_.adapters, name);
  if (ai < 0) return base;
  const AdapterRule& a = plan_.adapters[static_cast<size_t>(ai)];
  ++adapter_hits_[static_cast<size_t>(ai)];
  if (a.rank > std::min(k, nout)) {
    throw MakeConfigError(a.where, "rank",
                          "rank " + std::to_string(a.rank) + " exceeds min(in, out) = " +
                              std::to_string(std::min(k, nout)) + " of " + name + " (" + std::to_string(k) + " x " +
                              std::to_string(nout) + ", pattern '" + a.pattern + "')",
                          "a rank <= " + std::to_string(std::min(k, nout)),
                          "a LoRA update of higher rank than the weight itself is not low-rank");
  }
  if (a.mode == AdapterMode::kMerged) {
    if (f.Quantized()) merged_quantized_[static_cast<size_t>(ai)].insert(f.Label());
    return base;
  }
  const double bpe = AdapterBytesPerElement(a.dtype);
  const LinearFormat lf = a.dtype == AdapterDtype::kF32   ? LinearFormat::kF32
                          : a.dtype == AdapterDtype::kF16 ? LinearFormat::kF16
                                                          : LinearFormat::kBf16;
  const std::string fmt_label = "LoRA r" + std::to_string(a.rank) + " " + AdapterDtypeName(a.dtype);
  OpNode sa;
  sa.name = name + ".lora_A";
  sa.kind = OpKind::kLinear;
  sa.layer = layer;
  sa.m = m;
  sa.k = k;
  sa.n = a.rank;
  sa.flops = kMultiplyAddOps * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(a.rank);
  sa.weight_bytes = static_cast<double>(k) * static_cast<double>(a.rank) * bpe;
  sa.format = fmt_label;
  sa.linear_format = lf;
  OpVertex va = Add(sa, {x});
  Tensor low = Out(va, sa.name + ".out", static_cast<double>(m * a.rank) * kActBytes);
  OpNode sb = sa;
  sb.name = name + ".lora_B";
  sb.k = a.rank;
  sb.n = nout;
  sb.flops = kMultiplyAddOps * static_cast<double>(m) * static_cast<double>(a.rank) * static_cast<double>(nout) +
             kResidualAddOps * static_cast<double>(m) * static_cast<double>(nout);
  sb.weight_bytes = static_cast<double>(a.rank) * static_cast<double>(nout) * bpe;
  OpVertex vb = Add(sb, {low, base});
  return Out(vb, name + ".lora_out", static_cast<double>(m * nout) * kActBytes);
}

Tensor Builder::Elementwise(const std::string& name, OpKind kind, int layer, const std::vector<Tensor>& in,
                   double elems, double ops_per_elem, int group) {
  OpNode n;
  n.name = name;
  n.kind = kind;
  n.layer = layer;
  n.flops = ops_per_elem * elems;
  n.fusion_group = group;
  OpVertex v = Add(n, in);
  return Out(v, name + ".out", elems * kActBytes);
}

void Builder::Sampling(const Tensor& logits, int64_t rows) {
  OpNode n;
  n.name = "sampling";
  n.kind = OpKind::kSampling;
  n.flops = kSamplingOps * static_cast<double>(rows * arch_.vocab_size);
  n.act_write_bytes = static_cast<double>(rows) * kTokenIdBytes;
  Add(n, {logits});
}

void Builder::RefuseExpertAdapter(const std::string& name) const {
  const int ai = MatchAdapter(plan_.adapters, name);
  if (ai < 0) return;
  const AdapterRule& a = plan_.adapters[static_cast<size_t>(ai)];
  throw MakeConfigError(a.where, "pattern",
                        "pattern '" + a.pattern + "' matches the routed-expert linear " + name +
                            ": adapters on routed experts are not modelled",
                        "a pattern over dense, attention or shared-expert linears",
                        "narrow the pattern, e.g. '*.mlp.gate_proj' or '*.attn.q_proj'");
}

void Builder::CheckPlanUse() const {
  for (size_t a = 0; a < plan_.adapters.size(); ++a) {
    if (adapter_hits_[a] == 0) {
      throw MakeConfigError(plan_.adapters[a].where, "pattern",
                            "adapter pattern '" + plan_.adapters[a].pattern + "' matches no linear of " + arch_.name,
                            "a glob over linear names such as '*.mlp.gate_proj' or '*.attn.q_proj'",
                            "list the operators with `lifeline explain --model " + arch_.name + " --per-layer`");
    }
  }
  for (size_t r = 0; r < plan_.rules.size(); ++r) {
    if (hits_[r] == 0) {
      throw MakeConfigError(plan_.rules[r].where, "pattern",
                            "pattern '" + plan_.rules[r].pattern + "' matches no linear of " + arch_.name,
                            "a glob over operator names such as '*.mlp.gate_proj', 'lm_head' or '*'",
                            "list the operators with `lifeline explain --model " + arch_.name + "`");
    }
  }
}

void Builder::DeriveActivationTraffic() {
  std::set<std::pair<OpVertex, int>> written;
  std::set<std::pair<int, int>> read_by_group;  // (group, tensor) read once per fused kernel
  auto edges = boost::edges(g_);
  for (auto it = edges.first; it != edges.second; ++it) {
    const OpVertex u = boost::source(*it, g_), v = boost::target(*it, g_);
    const TensorEdge& e = g_[*it];
    const int gu = g_[u].fusion_group, gv = g_[v].fusion_group;
    if (gu >= 0 && gu == gv) continue;  // on chip
    if (gv < 0 || read_by_group.insert({gv, e.tensor_id}).second) {
      g_[v].act_read_bytes += e.bytes;
      g_[v].act_read_bytes_per_ctx += e.bytes_per_ctx;
    }
    if (written.insert({u, e.tensor_id}).second) {
      g_[u].act_write_bytes += e.bytes;
      g_[u].act_write_bytes_per_ctx += e.bytes_per_ctx;
    }
  }
}

}  // namespace graph_internal

void CheckRunValue(int64_t value, int64_t limit, const std::string& where, const std::string& key,
                   const std::string& unit) {
  if (value < 1 || value > limit) {
    throw MakeConfigError(where, key,
                          value < 1 ? "must be positive, got " + std::to_string(value)
                                    : std::to_string(value) + " is beyond the limit of " + std::to_string(limit) +
                                          " " + unit,
                          "1.." + std::to_string(limit) + " " + unit,
                          "the limits (roofline/README.md, \"Size limits\") are far above any deployed model");
  }
}

LinearFormat LinearFormatOf(const WeightFormat& f) {
  if (f.ggml) {
    switch (*f.ggml) {
      case GgmlType::kF32: return LinearFormat::kF32;
      case GgmlType::kF16: return LinearFormat::kF16;
      case GgmlType::kQ8_0: return LinearFormat::kQ8_0;
      case GgmlType::kQ4_0: return LinearFormat::kQ4_0;
      case GgmlType::kQ4_K: return LinearFormat::kQ4_K;
      case GgmlType::kQ3_K: return LinearFormat::kQ3_K;
      case GgmlType::kQ2_K: return LinearFormat::kQ2_K;
    }
    throw InternalError("LinearFormatOf: ggml type " + std::to_string(static_cast<int>(*f.ggml)) +
                        " has no LinearFormat");
  }
  if (f.bits >= 32) return LinearFormat::kF32;
  if (f.bits >= 16) return LinearFormat::kBf16;
  if (f.bits > 4) return LinearFormat::kInt8;
  if (f.bits == 4) return LinearFormat::kInt4;
  if (f.bits == 3) return LinearFormat::kInt3;
  return LinearFormat::kInt2;
}

ModelGraph BuildModelGraph(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& options) {
  return graph_internal::Builder(arch, plan, options).Build();
}

}  // namespace lifeline
