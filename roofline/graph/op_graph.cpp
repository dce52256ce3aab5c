#include "roofline/graph/op_graph.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace lifeline {

std::string OpKindName(OpKind k) {
  switch (k) {
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kNorm: return "norm";
    case OpKind::kLinear: return "linear";
    case OpKind::kRope: return "rope";
    case OpKind::kKvAppend: return "kv_append";
    case OpKind::kAttention: return "attention";
    case OpKind::kQkMatmul: return "qk_matmul";
    case OpKind::kSoftmax: return "softmax";
    case OpKind::kPvMatmul: return "pv_matmul";
    case OpKind::kActivation: return "activation";
    case OpKind::kResidualAdd: return "residual_add";
    case OpKind::kTopK: return "router_topk";
    case OpKind::kMoeCombine: return "moe_combine";
    case OpKind::kSampling: return "sampling";
  }
  return "?";
}

std::string FidelityName(Fidelity f) { return f == Fidelity::kPaper ? "paper" : "exact"; }
std::string FusionModeName(FusionMode f) { return f == FusionMode::kPaper ? "paper" : "none"; }

Fidelity ParseFidelity(const std::string& s) {
  if (s == "paper") return Fidelity::kPaper;
  if (s == "exact") return Fidelity::kExact;
  throw MakeConfigError("--fidelity", "fidelity", "unknown fidelity '" + s + "'", "paper or exact",
                        "paper reproduces how the published tables were made; exact uses the true architecture");
}

FusionMode ParseFusionMode(const std::string& s) {
  if (s == "paper") return FusionMode::kPaper;
  if (s == "none") return FusionMode::kNone;
  throw MakeConfigError("--fusion", "fusion", "unknown fusion mode '" + s + "'", "paper or none",
                        "none sends every intermediate to memory; paper fuses attention and gate-act-down");
}

GraphTotals SumGraph(const ModelGraph& mg, int64_t context_tokens) {
  GraphTotals t;
  for (auto v : mg.order) {
    const OpNode& n = mg.graph[v];
    const double c = mg.options.phase == Phase::kDecode
                         ? static_cast<double>(n.context_cap > 0 ? std::min(context_tokens, n.context_cap)
                                                                 : context_tokens)
                         : 0.0;
    t.flops += n.flops + n.flops_per_ctx * c + n.expert_unpack_ops;
    t.weight_bytes += n.weight_bytes;
    t.weight_meta_bytes += n.weight_meta_bytes;
    t.act_bytes += n.act_read_bytes + n.act_write_bytes + (n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx) * c;
    t.kv_read_bytes += n.kv_read_bytes + n.kv_read_bytes_per_ctx * c;
    t.kv_write_bytes += n.kv_write_bytes;
    t.dispatches += n.dispatches + n.head_dispatches;
  }
  return t;
}

}  // namespace lifeline
