// One decoder layer of the operator graph: norms and residual adds around an
// attention block (grouped-query attention, or DeepSeek's multi-head latent
// attention) and an FFN block (dense, or routed + shared experts), with each
// family's extra norms, biases and soft-capping (roofline/README.md,
// "Architecture families"). Operation counts: the table in builder.cpp.

#include <cmath>
#include <string>

#include "common/error.hpp"
#include "roofline/graph/builder_internal.hpp"

namespace lifeline::graph_internal {

Tensor Builder::Attention(int layer, const Tensor& q, const Tensor& k_new, const Tensor& v_new) {
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

Tensor Builder::Mlp(int layer, const Tensor& x) {
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

Tensor Builder::Layer(int l, const Tensor& h_in) {
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

Tensor Builder::SelfAttention(int l, const Tensor& n1) {
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

Tensor Builder::MlaAttention(int l, const Tensor& x) {
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
    // q_nope (nope per head) times W_UK^T per head: weights H x nope x r, output the query in the latent space.
    Tensor qa = Linear(p + "kv_b_proj.k_absorb", l, qr, tokens_, r, H * nope, false, -1, tokens_ * H * r);
    att = Attention(l, qa, latent, kr);
    att = Linear(p + "kv_b_proj.v_absorb", l, att, tokens_, r, H * vd, false);
  } else {
    Tensor kvb = Linear(p + "kv_b_proj", l, latent, tokens_, r, H * (nope + vd), false);
    SetAttentionShape(nope + rope, vd, r + rope, r, r + rope);
    att = Attention(l, qr, kvb, kr);
  }
  return Linear(p + "o_proj", l, att, tokens_, H * vd, hidden_, arch_.attention_bias);
}

void Builder::SetAttentionShape(int64_t qk_dim, int64_t v_dim, int64_t k_elems, int64_t v_elems, int64_t kv_elems) {
  qk_dim_ = qk_dim;
  v_dim_ = v_dim;
  kv_k_elems_ = k_elems;
  kv_v_elems_ = v_elems;
  kv_elems_ = kv_elems > 0 ? kv_elems : k_elems + v_elems;
}

Tensor Builder::DenseFfn(const std::string& p, int layer, const Tensor& x, int64_t inner, bool bias, int group) {
  Tensor gate = Linear(p + "gate_proj", layer, x, tokens_, hidden_, inner, bias, group);
  Tensor up = Linear(p + "up_proj", layer, x, tokens_, hidden_, inner, bias, group);
  Tensor act = Elementwise(p + "act_fn", OpKind::kActivation, layer, {gate, up},
                           static_cast<double>(tokens_ * inner), ActOps(), group);
  return Linear(p + "down_proj", layer, act, tokens_, inner, hidden_, bias, group);
}

double Builder::ActOps() const {
  if (arch_.hidden_act == "gelu") return kGeluErfOps;
  if (arch_.hidden_act == "gelu_pytorch_tanh" || arch_.hidden_act == "gelu_new") return kGeluTanhOps;
  return kSwigluOps;
}

}  // namespace lifeline::graph_internal
