#include "roofline/eval/evaluator.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace lifeline {
namespace {

struct Rates {
  double inv_compute[2];  // s per op, by ComputeClass
  double inv_unpack[9];   // s per expert-unpack op, by weight bits
  double inv_memory;      // s per byte
  double dispatch_s;
  double head_dispatch_s;
};

Rates RatesOf(const DeviceSpec& d) {
  Rates r{};
  r.inv_compute[static_cast<int>(ComputeClass::kGeneral)] = 1.0 / (d.compute_efficiency * d.compute_ops_per_s);
  r.inv_compute[static_cast<int>(ComputeClass::kAttention)] =
      1.0 / (d.attention_compute_efficiency * d.compute_ops_per_s);
  for (int b = 0; b < 9; ++b) r.inv_unpack[b] = 1.0 / (d.MoeExpertEfficiency(b) * d.compute_ops_per_s);
  r.inv_memory = 1.0 / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  r.dispatch_s = d.dispatch_overhead_s;
  r.head_dispatch_s = d.head_dispatch_overhead_s;
  return r;
}

double AttendedContext(const ModelGraph& g, const OpNode& n, int64_t ctx) {
  if (g.options.phase != Phase::kDecode) return 0.0;
  return static_cast<double>(n.context_cap > 0 ? std::min(ctx, n.context_cap) : ctx);
}

}  // namespace

StepResult EvaluateStep(const ModelGraph& g, const DeviceSpec& d, int64_t context_tokens) {
  const Rates r = RatesOf(d);
  StepResult res;
  res.ops.reserve(g.order.size());
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    const double c = AttendedContext(g, n, context_tokens);
    OpTiming t;
    const double class_flops = n.flops + n.flops_per_ctx * c;
    t.flops = class_flops + n.expert_unpack_ops;
    t.weight_bytes = n.weight_bytes + n.weight_meta_bytes;
    t.act_bytes = n.act_read_bytes + n.act_write_bytes + (n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx) * c;
    t.kv_bytes = n.kv_read_bytes + n.kv_read_bytes_per_ctx * c + n.kv_write_bytes;
    t.compute_s = class_flops * r.inv_compute[static_cast<int>(n.compute_class)] + n.expert_unpack_ops * r.inv_unpack[n.expert_unpack_bits];
    t.memory_s = (t.weight_bytes + t.act_bytes + t.kv_bytes) * r.inv_memory;
    t.overhead_s = n.dispatches * r.dispatch_s + n.head_dispatches * r.head_dispatch_s;
    t.compute_bound = t.compute_s > t.memory_s;
    t.total_s = (n.charge == Charge::kSum ? t.compute_s + t.memory_s : std::max(t.compute_s, t.memory_s)) +
                t.overhead_s;
    res.compute_s += t.compute_s;
    res.memory_s += t.memory_s;
    res.overhead_s += t.overhead_s;
    res.total_s += t.total_s;
    res.ops.push_back(t);
  }
  if (g.options.phase == Phase::kPrefill) {
    // LIFE: TTFT = max(sum of compute, sum of memory) over prefill.
    res.total_s = std::max(res.compute_s, res.memory_s) + res.overhead_s;
  }
  return res;
}

DecodeMetrics DecodeFromStep(double step_s, int64_t batch) {
  DecodeMetrics m;
  m.tpot_s = step_s;
  m.tps = step_s > 0 ? 1.0 / step_s : 0.0;
  m.batch_tokens_per_s = m.tps * static_cast<double>(batch);
  return m;
}

CompiledGraph::CompiledGraph(const ModelGraph& g) : phase_(g.options.phase), batch_(g.options.batch) {
  using Key = std::tuple<double, double, double, double, double, double, double, int64_t, int, bool, int>;
  std::map<Key, size_t> index;
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    Term t{};
    t.flops = n.flops;
    t.flops_per_ctx = n.flops_per_ctx;
    t.unpack_ops = n.expert_unpack_ops;
    t.unpack_bits = std::clamp(n.expert_unpack_bits, 0, 8);
    t.bytes = n.weight_bytes + n.weight_meta_bytes + n.act_read_bytes + n.act_write_bytes + n.kv_read_bytes +
              n.kv_write_bytes;
    t.bytes_per_ctx = n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx + n.kv_read_bytes_per_ctx;
    t.dispatches = n.dispatches;
    t.head_dispatches = n.head_dispatches;
    t.cap = n.context_cap;
    t.compute_class = static_cast<int>(n.compute_class);
    t.sum_charge = n.charge == Charge::kSum;
    const Key key{t.flops, t.flops_per_ctx, t.unpack_ops, t.bytes, t.bytes_per_ctx, t.dispatches,
                  t.head_dispatches, t.cap, t.compute_class, t.sum_charge, t.unpack_bits};
    auto it = index.find(key);
    if (it == index.end()) {
      t.count = 1;
      index.emplace(key, terms_.size());
      terms_.push_back(t);
    } else {
      terms_[it->second].count += 1;
    }
  }
}

double CompiledGraph::StepSeconds(const DeviceSpec& d, int64_t context_tokens) const {
  const Rates r = RatesOf(d);
  const double ctx = static_cast<double>(context_tokens);
  if (phase_ == Phase::kDecode) {
    double total = 0;
    for (const Term& t : terms_) {
      const double c = t.cap > 0 && t.cap < context_tokens ? static_cast<double>(t.cap) : ctx;
      const double tc = (t.flops + t.flops_per_ctx * c) * r.inv_compute[t.compute_class] + t.unpack_ops * r.inv_unpack[t.unpack_bits];
      const double tm = (t.bytes + t.bytes_per_ctx * c) * r.inv_memory;
      const double op = (t.sum_charge ? tc + tm : (tc > tm ? tc : tm)) + t.dispatches * r.dispatch_s +
                        t.head_dispatches * r.head_dispatch_s;
      total += t.count * op;
    }
    return total;
  }
  double tc_sum = 0, tm_sum = 0, ov = 0;
  for (const Term& t : terms_) {
    tc_sum += t.count * (t.flops * r.inv_compute[t.compute_class] + t.unpack_ops * r.inv_unpack[t.unpack_bits]);
    tm_sum += t.count * t.bytes * r.inv_memory;
    ov += t.count * (t.dispatches * r.dispatch_s + t.head_dispatches * r.head_dispatch_s);
  }
  return std::max(tc_sum, tm_sum) + ov;
}

}  // namespace lifeline
