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

namespace lifeline {
namespace {

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
  Builder(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& o)
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

  ModelGraph Build() {
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

 private:
  Tensor Input(const std::string& name, double bytes) {
    Tensor t;
    t.name = name;
    t.id = next_tensor_++;
    t.bytes = bytes;
    return t;
  }
  Tensor Out(OpVertex v, const std::string& name, double bytes, double bytes_per_ctx = 0) {
    Tensor t = Input(name, bytes);
    t.has_producer = true;
    t.producer = v;
    t.bytes_per_ctx = bytes_per_ctx;
    return t;
  }
  OpVertex Add(OpNode n, const std::vector<Tensor>& inputs) {
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
  // Attended context length is resolved at evaluation for decode; prefill
  // attends over the prompt (causal) and the `past_tokens` before it,
  // counted here.
  double PrefillPairs(int64_t cap) const {
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
  // Distinct cached positions a prefill step reads: its own P tokens and the
  // past ones in reach (within the window: the last cap - 1).
  double PrefillKvPositions(int64_t cap) const {
    const int64_t past = options_.past_tokens;
    return static_cast<double>(seq_tokens_ + (cap > 0 ? std::min(past, cap - 1) : past));
  }

  // The plan's format for a linear with input dimension k; counts the rule's
  // use and checks its group size divides k.
  WeightFormat FormatFor(const std::string& name, int64_t k) {
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

  Tensor Embedding(const Tensor& ids) {
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

  Tensor Norm(const std::string& name, int layer, const Tensor& x, int64_t width, int64_t heads = 0,
              int group = -1) {
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

  Tensor Linear(const std::string& name, int layer, const Tensor& x, int64_t m, int64_t k, int64_t nout,
                bool bias, int group = -1) {
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
    return AttachAdapter(name, layer, x, Out(v, name + ".out", static_cast<double>(m * nout) * kActBytes), m, k,
                         nout, f);
  }

  // A LoRA adapter on linear `name` (plan `adapters:`). Attached: the shrink
  // A (k x r) and the expand B (r x nout) run as two kernels of their own
  // beside the frozen linear (as Punica / S-LoRA / vLLM run them), B
  // accumulating into the linear's output in place (one add per output
  // element). Merged: folded into the weight, no op; a quantized weight then
  // holds a re-quantized W + B A, which Build() reports in ModelGraph::notes.
  Tensor AttachAdapter(const std::string& name, int layer, const Tensor& x, const Tensor& base, int64_t m, int64_t k,
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

  Tensor Elementwise(const std::string& name, OpKind kind, int layer, const std::vector<Tensor>& in,
                     double elems, double ops_per_elem, int group = -1) {
    OpNode n;
    n.name = name;
    n.kind = kind;
    n.layer = layer;
    n.flops = ops_per_elem * elems;
    n.fusion_group = group;
    OpVertex v = Add(n, in);
    return Out(v, name + ".out", elems * kActBytes);
  }

  Tensor Attention(int layer, const Tensor& q, const Tensor& k_new, const Tensor& v_new) {
    const std::string p = "layers." + std::to_string(layer) + ".attn.";
    const bool sliding = options_.fidelity == Fidelity::kExact &&
                         arch_.LayerAttention(layer) == AttentionKind::kSliding;
    const int64_t cap = sliding ? arch_.sliding_window : 0;
    // KV append: the new tokens' K and V go to the cache.
    OpNode app;
    app.name = p + "kv_append";
    app.kind = OpKind::kKvAppend;
    app.layer = layer;
    app.kv_write_bytes = static_cast<double>(tokens_ * kv_elems_) * kv_bytes_per_element_;
    OpVertex va = Add(app, {k_new, v_new});
    (void)va;
    const double kv_per_token = static_cast<double>(batch_ * kv_elems_) * kv_bytes_per_element_;  // K+V of one position, all sequences
    // Per (query, key) pair and head: the q.k and p.v dot products (a
    // multiply-accumulate per element each) and the score's softmax.
    const double cap_ops = arch_.attn_logit_softcapping > 0 ? kSoftcapOps : 0.0;
    const double ops_per_pair =
        static_cast<double>(num_heads_) *
        (kMultiplyAddOps * static_cast<double>(qk_dim_ + v_dim_) + kSoftmaxOps + cap_ops);
    // GPT-OSS's sink: one more logit per head and query in each softmax.
    const double sink_ops = arch_.attention_sinks && options_.fidelity == Fidelity::kExact
                                ? static_cast<double>(tokens_ * num_heads_) * kSoftmaxOps
                                : 0.0;
    const bool decode = options_.phase == Phase::kDecode;
    const double pairs = decode ? 0.0 : static_cast<double>(batch_) * PrefillPairs(cap);
    const double out_bytes = static_cast<double>(tokens_ * num_heads_ * v_dim_) * kActBytes;
    if (options_.fusion == FusionMode::kPaper) {
      OpNode n;
      n.name = p + "attention";
      n.kind = OpKind::kAttention;
      n.layer = layer;
      n.compute_class = ComputeClass::kAttention;
      n.charge = Charge::kSum;
      n.context_cap = cap;
      n.flops = sink_ops;
      if (decode) {
        n.flops_per_ctx = static_cast<double>(batch_) * ops_per_pair;
        n.kv_read_bytes_per_ctx = kv_per_token;
      } else {
        n.flops += pairs * ops_per_pair;
        n.kv_read_bytes = kv_per_token * PrefillKvPositions(cap);
      }
      OpVertex v = Add(n, {q});
      return Out(v, p + "attention.out", out_bytes);
    }
    // Unfused: scores and probabilities go through memory.
    const double score_elems_per_ctx = static_cast<double>(batch_ * num_heads_);
    OpNode qk;
    qk.name = p + "qk_matmul";
    qk.kind = OpKind::kQkMatmul;
    qk.layer = layer;
    qk.compute_class = ComputeClass::kAttention;
    qk.context_cap = cap;
    OpNode sm = qk, pv = qk;
    sm.name = p + "softmax";
    sm.kind = OpKind::kSoftmax;
    pv.name = p + "pv_matmul";
    pv.kind = OpKind::kPvMatmul;
    const double qk_ops = static_cast<double>(num_heads_) * kMultiplyAddOps * static_cast<double>(qk_dim_);
    const double pv_ops = static_cast<double>(num_heads_) * kMultiplyAddOps * static_cast<double>(v_dim_);
    const double sm_ops = static_cast<double>(num_heads_) * (kSoftmaxOps + cap_ops);
    // The K part and the V part of a position's cache (MLA: the latent and
    // RoPE key for scores, the latent again for values).
    const double k_share = static_cast<double>(kv_k_elems_) / static_cast<double>(kv_elems_);
    const double v_share = static_cast<double>(kv_v_elems_) / static_cast<double>(kv_elems_);
    sm.flops = sink_ops;
    if (decode) {
      qk.flops_per_ctx = static_cast<double>(batch_) * qk_ops;
      qk.kv_read_bytes_per_ctx = kv_per_token * k_share;
      sm.flops_per_ctx = static_cast<double>(batch_) * sm_ops;
      pv.flops_per_ctx = static_cast<double>(batch_) * pv_ops;
      pv.kv_read_bytes_per_ctx = kv_per_token * v_share;
    } else {
      qk.flops = pairs * qk_ops;
      qk.kv_read_bytes = kv_per_token * PrefillKvPositions(cap) * k_share;
      sm.flops += pairs * sm_ops;
      pv.flops = pairs * pv_ops;
      pv.kv_read_bytes = kv_per_token * PrefillKvPositions(cap) * v_share;
    }
    OpVertex vqk = Add(qk, {q});
    Tensor scores = decode ? Out(vqk, p + "scores", 0, score_elems_per_ctx * kActBytes)
                           : Out(vqk, p + "scores", pairs * static_cast<double>(num_heads_) * kActBytes);
    OpVertex vsm = Add(sm, {scores});
    Tensor probs = decode ? Out(vsm, p + "probs", 0, score_elems_per_ctx * kActBytes)
                          : Out(vsm, p + "probs", pairs * static_cast<double>(num_heads_) * kActBytes);
    OpVertex vpv = Add(pv, {probs});
    return Out(vpv, p + "pv_matmul.out", out_bytes);
  }

  Tensor Mlp(int layer, const Tensor& x) {
    const std::string p = "layers." + std::to_string(layer) + ".mlp.";
    const int group = options_.fusion == FusionMode::kPaper ? next_group_++ : -1;
    const int64_t i = arch_.intermediate_size;
    if (!arch_.LayerIsMoe(layer)) return DenseFfn(p, layer, x, i, arch_.mlp_bias, group);
    // Mixture of experts: router, top-k, the selected experts, weighted combine.
    const int64_t E = arch_.num_local_experts, K = arch_.num_experts_per_tok;
    Tensor logits = Linear(p + "router", layer, x, tokens_, hidden_, E, arch_.router_bias);
    const int64_t ei = arch_.ExpertIntermediateSize();
    OpNode tk;
    tk.name = p + "router_topk";
    tk.kind = OpKind::kTopK;
    tk.layer = layer;
    tk.flops = static_cast<double>(tokens_ * E) * kSoftmaxOps;  // the router logits' softmax
    OpVertex vtk = Add(tk, {logits});
    Tensor sel = Out(vtk, p + "router_topk.out", static_cast<double>(tokens_ * K) * (kTokenIdBytes + kActBytes));
    // Distinct experts whose weights are read in one step.
    const double tokens = static_cast<double>(tokens_);
    const double used = static_cast<double>(E) *
                        (1.0 - std::pow(1.0 - static_cast<double>(K) / static_cast<double>(E), tokens));
    auto expert = [&](const std::string& name, const Tensor& in, int64_t k, int64_t nout, bool unpack) {
      const WeightFormat f = FormatFor(name, k);
      RefuseExpertAdapter(name);
      OpNode n;
      n.name = name;
      n.kind = OpKind::kLinear;
      n.layer = layer;
      n.m = tokens_ * K;
      n.k = k;
      n.n = nout;
      const double w = static_cast<double>(k * nout);
      n.flops = kMultiplyAddOps * static_cast<double>(tokens_ * K) * w +
                (f.Quantized() ? kDequantOpsPerWeight * used * w : 0.0);
      n.weight_bytes = used * ((f.Quantized() || f.ggml ? f.ValueBytes(w) : w * kActBytes) +
                               (arch_.mlp_bias ? static_cast<double>(nout) * kActBytes : 0.0));
      n.weight_meta_bytes = used * f.MetadataBytes(w);
      // Every expert is held in memory, not only the ones this step selects.
      n.stored_weight_bytes = n.weight_bytes / used * static_cast<double>(E) +
                              static_cast<double>(E) * f.MetadataBytes(w);
      // Unpacking the selected experts' low-bit weights: one op per weight bit.
      if (unpack && f.Quantized()) {
        n.expert_unpack_ops = used * w * f.bits;
        n.expert_unpack_bits = f.bits;
      }
      n.format = f.Label();
      n.linear_format = LinearFormatOf(f);
      n.fusion_group = group;
      OpVertex v = Add(n, {in, sel});
      return Out(v, name + ".out", static_cast<double>(tokens_ * K * nout) * kActBytes);
    };
    Tensor gate = expert(p + "experts.gate_proj", x, hidden_, ei, false);
    Tensor up = expert(p + "experts.up_proj", x, hidden_, ei, false);
    Tensor act = Elementwise(p + "experts.act_fn", OpKind::kActivation, layer, {gate, up},
                             static_cast<double>(tokens_ * K * ei), ActOps(), group);
    Tensor down = expert(p + "experts.down_proj", act, ei, hidden_, true);
    if (arch_.shared_expert_intermediate_size <= 0) {
      return Elementwise(p + "experts.combine", OpKind::kMoeCombine, layer, {down, sel},
                         static_cast<double>(tokens_ * hidden_), kCombineOpsPerExpert * static_cast<double>(K));
    }
    // Shared experts: one dense FFN every token runs, added to the routed sum.
    Tensor shared = DenseFfn(p + "shared_experts.", layer, x, arch_.shared_expert_intermediate_size, false, -1);
    return Elementwise(p + "experts.combine", OpKind::kMoeCombine, layer, {down, sel, shared},
                       static_cast<double>(tokens_ * hidden_),
                       kCombineOpsPerExpert * static_cast<double>(K) + kResidualAddOps);
  }

  Tensor Layer(int l, const Tensor& h_in) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Tensor n1 = Norm(p + "input_layernorm", l, h_in, hidden_);
    Tensor o = arch_.IsMla() ? MlaAttention(l, n1) : SelfAttention(l, n1);
    // Gemma: each block's output is normed before its residual add, and the
    // FFN has its own input norm.
    if (arch_.sandwich_norms) o = Norm(p + "post_attention_layernorm", l, o, hidden_);
    Tensor h1 = Elementwise(p + "attn.residual_add", OpKind::kResidualAdd, l, {h_in, o},
                            static_cast<double>(tokens_ * hidden_), kResidualAddOps);
    Tensor n2 = Norm(p + (arch_.sandwich_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm"), l, h1,
                     hidden_);
    Tensor d = Mlp(l, n2);
    if (arch_.sandwich_norms) d = Norm(p + "post_feedforward_layernorm", l, d, hidden_);
    return Elementwise(p + "mlp.residual_add", OpKind::kResidualAdd, l, {h1, d}, static_cast<double>(tokens_ * hidden_),
                       kResidualAddOps);
  }

  // Multi-query/grouped-query attention with per-head q/k/v projections.
  Tensor SelfAttention(int l, const Tensor& n1) {
    const std::string p = "layers." + std::to_string(l) + ".";
    SetAttentionShape(head_dim_, head_dim_, num_kv_heads_ * head_dim_, num_kv_heads_ * head_dim_);
    const bool qkv_bias = arch_.attention_bias || arch_.qkv_bias;  // Qwen2: q/k/v only
    Tensor q = Linear(p + "attn.q_proj", l, n1, tokens_, hidden_, num_heads_ * head_dim_, qkv_bias);
    Tensor k = Linear(p + "attn.k_proj", l, n1, tokens_, hidden_, num_kv_heads_ * head_dim_, qkv_bias);
    Tensor v = Linear(p + "attn.v_proj", l, n1, tokens_, hidden_, num_kv_heads_ * head_dim_, qkv_bias);
    if (arch_.qk_norm) {
      q = Norm(p + "attn.q_norm", l, q, head_dim_, num_heads_);
      k = Norm(p + "attn.k_norm", l, k, head_dim_, num_kv_heads_);
    }
    // RoPE rotates q and k; reads the cos/sin rows of the current positions.
    OpNode r;
    r.name = p + "attn.rope";
    r.kind = OpKind::kRope;
    r.layer = l;
    const double qk_elems = static_cast<double>(tokens_ * (num_heads_ + num_kv_heads_) * head_dim_);
    r.flops = kRopeOps * qk_elems;
    r.weight_bytes = static_cast<double>(seq_tokens_ * head_dim_) * kActBytes * 2;
    r.stored_weight_bytes = 0;  // cos/sin rows are computed per position, not stored parameters
    OpVertex vr = Add(r, {q, k});
    Tensor qr = Out(vr, p + "attn.q_rot", static_cast<double>(tokens_ * num_heads_ * head_dim_) * kActBytes);
    Tensor kr = qr;
    kr.bytes = static_cast<double>(tokens_ * num_kv_heads_ * head_dim_) * kActBytes;
    kr.name = p + "attn.k_rot";
    kr.id = next_tensor_++;
    Tensor att = Attention(l, qr, kr, v);
    return Linear(p + "attn.o_proj", l, att, tokens_, num_heads_ * head_dim_, hidden_, arch_.attention_bias);
  }

  // Multi-head latent attention (DeepSeek-V2/V3). The cache holds, per
  // position and layer, one latent of kv_lora_rank and one RoPE key of
  // qk_rope_head_dim that all heads share. Decode runs the absorbed form: the
  // key half of kv_b_proj folds into the query (`kv_b_proj.k_absorb`: q_nope
  // into latent space), scores and values are taken against the cached latent
  // itself, and the value half maps the output back (`kv_b_proj.v_absorb`);
  // together they read kv_b_proj's weights once. Prefill expands every prompt
  // position's latent with kv_b_proj and attends per head.
  Tensor MlaAttention(int l, const Tensor& x) {
    const std::string p = "layers." + std::to_string(l) + ".attn.";
    const int64_t H = num_heads_, r = arch_.kv_lora_rank, nope = arch_.qk_nope_head_dim,
                  rope = arch_.qk_rope_head_dim, vd = arch_.v_head_dim;
    Tensor q = x;
    if (arch_.q_lora_rank > 0) {
      q = Linear(p + "q_a_proj", l, x, tokens_, hidden_, arch_.q_lora_rank, arch_.attention_bias);
      q = Norm(p + "q_a_layernorm", l, q, arch_.q_lora_rank);
      q = Linear(p + "q_b_proj", l, q, tokens_, arch_.q_lora_rank, H * (nope + rope), false);
    } else {
      q = Linear(p + "q_proj", l, x, tokens_, hidden_, H * (nope + rope), arch_.attention_bias);
    }
    Tensor kv = Linear(p + "kv_a_proj_with_mqa", l, x, tokens_, hidden_, r + rope, arch_.attention_bias);
    Tensor latent = Norm(p + "kv_a_layernorm", l, kv, r);
    // RoPE on each head's rope part of q and on the one shared key.
    OpNode rn;
    rn.name = p + "rope";
    rn.kind = OpKind::kRope;
    rn.layer = l;
    rn.flops = kRopeOps * static_cast<double>(tokens_ * (H + 1) * rope);
    rn.weight_bytes = static_cast<double>(seq_tokens_ * rope) * kActBytes * 2;
    rn.stored_weight_bytes = 0;
    OpVertex vr = Add(rn, {q, kv});
    Tensor qr = Out(vr, p + "q_rot", static_cast<double>(tokens_ * H * (nope + rope)) * kActBytes);
    Tensor kr = Out(vr, p + "k_rot", static_cast<double>(tokens_ * rope) * kActBytes);
    SetAttentionShape(r + rope, r, r + rope, r, r + rope);
    Tensor att;
    if (options_.phase == Phase::kDecode) {
      Tensor qa = Linear(p + "kv_b_proj.k_absorb", l, qr, tokens_, r, H * nope, false);
      att = Attention(l, qa, latent, kr);
      att = Linear(p + "kv_b_proj.v_absorb", l, att, tokens_, r, H * vd, false);
    } else {
      Tensor kvb = Linear(p + "kv_b_proj", l, latent, tokens_, r, H * (nope + vd), false);
      SetAttentionShape(nope + rope, vd, r + rope, r, r + rope);
      att = Attention(l, qr, kvb, kr);
    }
    return Linear(p + "o_proj", l, att, tokens_, H * vd, hidden_, arch_.attention_bias);
  }

  // The attention Attention() builds: per-head q.k and value widths, and the
  // cached elements per position the scores read, the values read, and in all.
  void SetAttentionShape(int64_t qk_dim, int64_t v_dim, int64_t k_elems, int64_t v_elems, int64_t kv_elems = 0) {
    qk_dim_ = qk_dim;
    v_dim_ = v_dim;
    kv_k_elems_ = k_elems;
    kv_v_elems_ = v_elems;
    kv_elems_ = kv_elems > 0 ? kv_elems : k_elems + v_elems;
  }

  // Gate/up/down with the model's gated activation.
  Tensor DenseFfn(const std::string& p, int layer, const Tensor& x, int64_t inner, bool bias, int group) {
    Tensor gate = Linear(p + "gate_proj", layer, x, tokens_, hidden_, inner, bias, group);
    Tensor up = Linear(p + "up_proj", layer, x, tokens_, hidden_, inner, bias, group);
    Tensor act = Elementwise(p + "act_fn", OpKind::kActivation, layer, {gate, up},
                             static_cast<double>(tokens_ * inner), ActOps(), group);
    return Linear(p + "down_proj", layer, act, tokens_, inner, hidden_, bias, group);
  }

  // Operations per element of the gated activation (table at the top).
  double ActOps() const {
    if (arch_.hidden_act == "gelu") return kGeluErfOps;
    if (arch_.hidden_act == "gelu_pytorch_tanh" || arch_.hidden_act == "gelu_new") return kGeluTanhOps;
    return kSwigluOps;
  }

  void Sampling(const Tensor& logits, int64_t rows) {
    OpNode n;
    n.name = "sampling";
    n.kind = OpKind::kSampling;
    n.flops = kSamplingOps * static_cast<double>(rows * arch_.vocab_size);
    n.act_write_bytes = static_cast<double>(rows) * kTokenIdBytes;
    Add(n, {logits});
  }

  void RefuseExpertAdapter(const std::string& name) const {
    const int ai = MatchAdapter(plan_.adapters, name);
    if (ai < 0) return;
    const AdapterRule& a = plan_.adapters[static_cast<size_t>(ai)];
    throw MakeConfigError(a.where, "pattern",
                          "pattern '" + a.pattern + "' matches the routed-expert linear " + name +
                              ": adapters on routed experts are not modelled",
                          "a pattern over dense, attention or shared-expert linears",
                          "narrow the pattern, e.g. '*.mlp.gate_proj' or '*.attn.q_proj'");
  }

  void CheckPlanUse() const {
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

  // A tensor crossing a fusion-group boundary is written once by its producer
  // and read once by each consuming kernel; inside a group it stays on chip.
  void DeriveActivationTraffic() {
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

}  // namespace

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
  return Builder(arch, plan, options).Build();
}

}  // namespace lifeline
