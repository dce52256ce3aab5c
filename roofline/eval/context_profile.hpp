#pragma once
// A compiled graph bound to one device, with the context as its only
// parameter: what a context sweep evaluates at every point.
//
// Every operator's work is affine in its attended length c = min(context,
// context_cap) (OpNode: flops + flops_per_ctx * c, bytes + bytes_per_ctx * c;
// c is the sliding window on sliding layers, the KV bytes per token follow the
// plan's KV dtype and MLA's compressed cache). On a fixed device the terms of
// a CompiledGraph that do not grow with the context therefore add up to one
// constant, and a context costs only the few terms that do (attention, KV
// reads, unfused scores), each evaluated exactly as CompiledGraph::StepSeconds
// evaluates it. A prefill step does not depend on the decode context: its
// profile is one constant.
//
// The reference is EvaluateStep on the ModelGraph. `CompiledMatchesReference`
// checks a compiled graph against it at probe contexts (both sides of every
// window, the ends of a sweep); where they differ (an operator whose cost the
// compiled form does not express), `UseReference` makes the profile evaluate
// the graph operator by operator at every context instead of approximating.

#include <cstdint>
#include <string>
#include <vector>

#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {

class ContextProfile {
 public:
  // Folds `g` on device `d` (reuses this profile's storage).
  void Compile(const CompiledGraph& g, const DeviceSpec& d);
  // Evaluates `graph` with EvaluateStep on `d` at every context; `graph` must
  // outlive the profile's use.
  void UseReference(const ModelGraph& graph, const DeviceSpec& d);
  // Decode: the step's seconds at `context_tokens`; prefill: TTFT.
  double StepSeconds(int64_t context_tokens) const;
  // Terms evaluated per context (0 for prefill, or in reference mode).
  size_t ContextTermCount() const { return terms_.size(); }
  bool reference() const { return reference_ != nullptr; }

 private:
  struct Term {
    double flops, flops_per_ctx, inv_compute;  // compute = (flops + flops_per_ctx * c) * inv_compute + unpack_s
    double unpack_s;
    double bytes, bytes_per_ctx;               // memory = (bytes + bytes_per_ctx * c) * inv_memory
    double dispatch_s, head_dispatch_s;        // overheads of one instance
    double count;
    int64_t cap;                               // context cap (sliding window); 0 = whole context
    bool sum_charge;
  };
  double fixed_s_ = 0;  // the context-free terms (decode) or the whole step (prefill)
  double inv_memory_ = 0;
  std::vector<Term> terms_;
  const ModelGraph* reference_ = nullptr;
  DeviceSpec reference_device_;
};

// Contexts at which a context-parametric evaluation of `g` can first go wrong:
// 1..3, every context cap and its neighbours, twice each cap, and `extra`
// (a sweep's smallest and largest context), clamped to 1..kMaxContextTokens.
std::vector<int64_t> ProbeContexts(const ModelGraph& g, const std::vector<int64_t>& extra);

// True when CompiledGraph(g) folded on `d` gives EvaluateStep's step time
// within `rel_tol` (relative) at every probe context; otherwise false, with
// the first differing context and both times in `why`.
bool CompiledMatchesReference(const ModelGraph& g, const CompiledGraph& c, const DeviceSpec& d,
                              const std::vector<int64_t>& probes, std::string* why, double rel_tol = 1e-12);

}  // namespace lifeline
