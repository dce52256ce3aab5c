#include "experiments/whatif_tables.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "roofline/eval/footprint.hpp"

namespace lifeline::whatif {

std::vector<reports::Table> AnalysisTables(const PointAnalysis& a, const Setting& s, size_t top_ops) {
  using reports::Cell;
  auto opt = [](const std::optional<double>& v, int prec) { return v ? Cell(*v, prec) : Cell("none"); };
  auto opt_ctx = [](const std::optional<int64_t>& v) {
    return v ? Cell::Int(*v) : Cell(fmt::format("none up to {}", kMaxFlipContext));
  };
  std::vector<reports::Table> out;
  reports::Table sum;
  sum.title = fmt::format("{} on {} ({:.6g} TOPS, {:.6g} GB/s), plan {} (KV {}), fusion {}, fidelity {}, batch {}, "
                          "context {}, prompt {}",
                          s.arch.name, s.device.name, s.device.compute_ops_per_s / 1e12,
                          s.device.memory_bandwidth_bytes_per_s / 1e9, s.plan.name, KvDtypeName(s.plan.kv_dtype),
                          s.fusion, s.fidelity, s.decode.batch, s.context, s.prompt);
  sum.columns = {"metric", "decode", "prefill"};
  sum.rows.push_back({"time_s (TPOT / TTFT)", Cell(a.tpot_s, 6), Cell(a.ttft_s, 6)});
  sum.rows.push_back({"tokens_per_s (per sequence / prompt tokens)", Cell(a.tps, 3), Cell(a.prefill_tokens_per_s, 1)});
  sum.rows.push_back({"tokens_per_s over the batch", Cell(a.batch_tps, 3), Cell()});
  sum.rows.push_back({"sum of compute_s", Cell(a.decode_compute_s, 6), Cell(a.prefill_compute_s, 6)});
  sum.rows.push_back({"sum of memory_s", Cell(a.decode_memory_s, 6), Cell(a.prefill_memory_s, 6)});
  sum.rows.push_back({"sum of overhead_s", Cell(a.decode_overhead_s, 6), Cell(a.prefill_overhead_s, 6)});
  sum.rows.push_back({"bound (sum compute vs sum memory)", a.decode_bound, a.prefill_bound});
  sum.rows.push_back({"flips bound at memory_bandwidth_gb_per_s", opt(a.step_flip_bandwidth_gb_per_s, 2),
                      opt(a.prefill_flip_bandwidth_gb_per_s, 2)});
  sum.rows.push_back({"flips bound at context / prompt (tokens)", opt_ctx(a.step_flip_context_tokens),
                      opt_ctx(a.prefill_flip_prompt_tokens)});
  // What the device holds for each phase (roofline/eval/footprint.hpp).
  const Footprint fd = ComputeFootprint(BuildModelGraph(s.arch, s.plan, s.decode), s.context);
  const Footprint fp = ComputeFootprint(BuildModelGraph(s.arch, s.plan, s.prefill), s.prompt);
  sum.rows.push_back({"weight_bytes (stored)", Cell(fd.weight_bytes, 0), Cell(fp.weight_bytes, 0)});
  sum.rows.push_back({"kv_cache_bytes (context / prompt x batch)", Cell(fd.kv_cache_bytes, 0),
                      Cell(fp.kv_cache_bytes, 0)});
  sum.rows.push_back({"activation_workspace_bytes", Cell(fd.activation_workspace_bytes, 0),
                      Cell(fp.activation_workspace_bytes, 0)});
  sum.rows.push_back({"footprint_bytes", Cell(fd.total_bytes, 0), Cell(fp.total_bytes, 0)});
  sum.rows.push_back({"fits memory_capacity_gb", FitsDevice(fd, s.device) ? "true" : "false",
                      FitsDevice(fp, s.device) ? "true" : "false"});
  if (!FitsDevice(fd, s.device)) sum.notes.push_back("infeasible decode: " + DescribeFootprint(fd, s.device));
  if (!FitsDevice(fp, s.device)) sum.notes.push_back("infeasible prefill: " + DescribeFootprint(fp, s.device));
  sum.notes.push_back(fmt::format("ridge point {:.2f} ops/byte at peak; {:.2f} with the compute and memory "
                                  "efficiencies; {:.2f} for attention",
                                  a.ridge_ops_per_byte, a.effective_ridge_ops_per_byte, a.attention_ridge_ops_per_byte));
  sum.notes.push_back("a step is compute-bound when its summed compute time exceeds its summed memory time; the flip "
                      "bandwidth solves sum(compute) = sum(memory) exactly (memory time scales as 1/bandwidth); the "
                      "flip context is found by bisection");
  out.push_back(sum);

  reports::Table el;
  el.title = "Elasticities: d ln(throughput) / d ln(x), central difference of +-0.1%";
  el.columns = {"key", "value", "decode_tps", "prefill_tokens_per_s"};
  for (const auto& e : a.elasticities)
    el.rows.push_back({e.key, Cell(FormatValue(e.value)), Cell(e.decode_tps, 4), Cell(e.prefill_tps, 4)});
  el.notes.push_back("1.0 = throughput proportional to x; 0 = x does not matter here; negative for overheads");
  out.push_back(el);

  reports::Table ops;
  ops.title = fmt::format("Operators by share of the decode step (top {} of {})", std::min(top_ops, a.ops.size()),
                          a.ops.size());
  ops.columns = {"op", "kind", "count", "format", "time_s", "share_pct", "intensity_ops_per_byte", "bound",
                 "flip_bandwidth_gb_per_s", "flip_context_tokens"};
  for (size_t i = 0; i < a.ops.size() && i < top_ops; ++i) {
    const OpGroup& g = a.ops[i];
    ops.rows.push_back({g.name, g.kind, Cell::Int(g.count), g.format, Cell(g.time_s, 9), Cell(g.share_pct, 2),
                        Cell(g.intensity_ops_per_byte, 3), g.bound, opt(g.flip_bandwidth_gb_per_s, 2),
                        opt_ctx(g.flip_context_tokens)});
  }
  ops.notes.push_back(fmt::format("an operator is compute-bound when its intensity exceeds the ridge point "
                                  "({:.2f} ops/byte, attention {:.2f}); flip_bandwidth_gb_per_s is where its compute "
                                  "time equals its memory time",
                                  a.effective_ridge_ops_per_byte, a.attention_ridge_ops_per_byte));
  out.push_back(ops);
  return out;
}

}  // namespace lifeline::whatif
