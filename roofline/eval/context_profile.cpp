#include "roofline/eval/context_profile.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace lifeline {

void ContextProfile::Compile(const CompiledGraph& g, const DeviceSpec& d) {
  reference_ = nullptr;
  terms_.clear();
  std::vector<double> inv;
  g.SlotSecondsPerOp(d, inv);
  inv_memory_ = 1.0 / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  const double dispatch_s = d.dispatch_overhead_s, head_dispatch_s = d.head_dispatch_overhead_s;
  if (g.phase_ == Phase::kPrefill) {
    // CompiledGraph::StepSeconds's prefill sum, once: TTFT does not depend on the decode context.
    double tc_sum = 0, tm_sum = 0, ov = 0;
    for (const auto& t : g.terms_) {
      tc_sum += t.count * (t.flops * inv[t.compute_rate] + t.unpack_ops * inv[t.unpack_rate]);
      tm_sum += t.count * t.bytes * inv_memory_;
      ov += t.count * (t.dispatches * dispatch_s + t.head_dispatches * head_dispatch_s);
    }
    fixed_s_ = std::max(tc_sum, tm_sum) + ov;
    return;
  }
  fixed_s_ = 0;
  for (const auto& t : g.terms_) {
    Term p{};
    p.flops = t.flops;
    p.flops_per_ctx = t.flops_per_ctx;
    p.inv_compute = inv[t.compute_rate];
    p.unpack_s = t.unpack_ops * inv[t.unpack_rate];
    p.bytes = t.bytes;
    p.bytes_per_ctx = t.bytes_per_ctx;
    p.dispatch_s = t.dispatches * dispatch_s;
    p.head_dispatch_s = t.head_dispatches * head_dispatch_s;
    p.count = t.count;
    p.cap = t.cap;
    p.sum_charge = t.sum_charge;
    if (p.flops_per_ctx != 0 || p.bytes_per_ctx != 0) {
      terms_.push_back(p);
      continue;
    }
    // A context-free term: its time, as CompiledGraph::StepSeconds computes it at any context.
    const double tc = p.flops * p.inv_compute + p.unpack_s;
    const double tm = p.bytes * inv_memory_;
    fixed_s_ += p.count * ((p.sum_charge ? tc + tm : (tc > tm ? tc : tm)) + p.dispatch_s + p.head_dispatch_s);
  }
}

void ContextProfile::UseReference(const ModelGraph& graph, const DeviceSpec& d) {
  terms_.clear();
  fixed_s_ = 0;
  reference_ = &graph;
  reference_device_ = d;
}

double ContextProfile::StepSeconds(int64_t context_tokens) const {
  if (reference_) return EvaluateStep(*reference_, reference_device_, context_tokens).total_s;
  const double ctx = static_cast<double>(context_tokens);
  double total = fixed_s_;
  for (const Term& t : terms_) {
    const double c = t.cap > 0 && t.cap < context_tokens ? static_cast<double>(t.cap) : ctx;
    const double tc = (t.flops + t.flops_per_ctx * c) * t.inv_compute + t.unpack_s;
    const double tm = (t.bytes + t.bytes_per_ctx * c) * inv_memory_;
    total += t.count * ((t.sum_charge ? tc + tm : (tc > tm ? tc : tm)) + t.dispatch_s + t.head_dispatch_s);
  }
  return total;
}

std::vector<int64_t> ProbeContexts(const ModelGraph& g, const std::vector<int64_t>& extra) {
  std::vector<int64_t> p = {1, 2, 3, 4096};
  std::vector<int64_t> caps;
  for (auto v : g.order) {
    const int64_t cap = g.graph[v].context_cap;
    if (cap > 0 && std::find(caps.begin(), caps.end(), cap) == caps.end()) caps.push_back(cap);
  }
  for (int64_t cap : caps) {
    for (int64_t c : {cap - 1, cap, cap + 1, 2 * cap}) p.push_back(c);
  }
  for (int64_t e : extra) p.push_back(e);
  for (auto& c : p) c = std::clamp<int64_t>(c, 1, kMaxContextTokens);
  std::sort(p.begin(), p.end());
  p.erase(std::unique(p.begin(), p.end()), p.end());
  return p;
}

bool CompiledMatchesReference(const ModelGraph& g, const CompiledGraph& c, const DeviceSpec& d,
                              const std::vector<int64_t>& probes, std::string* why, double rel_tol) {
  ContextProfile profile;
  profile.Compile(c, d);
  for (int64_t ctx : probes) {
    const double ref = EvaluateStep(g, d, ctx).total_s;
    const double got = profile.StepSeconds(ctx);
    if (!(std::fabs(got - ref) <= rel_tol * std::fabs(ref))) {
      if (why) {
        *why = fmt::format("at context {} the compiled step takes {:.17g} s, the operator-by-operator evaluation "
                           "{:.17g} s",
                           ctx, got, ref);
      }
      return false;
    }
    if (g.options.phase == Phase::kPrefill) break;  // one step, whatever the context
  }
  return true;
}

}  // namespace lifeline
