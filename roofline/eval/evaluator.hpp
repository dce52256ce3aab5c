#pragma once
// Evaluates a ModelGraph on a device: per-operator compute time, memory time,
// bound and dispatch overhead, and step totals (TPOT for decode, TTFT for
// prefill). Time per op = max(compute, memory) (or their sum for ops charged
// that way) + dispatch overhead; compute = ops / (efficiency * peak ops/s),
// memory = bytes / (memory efficiency * bandwidth). The efficiency is the
// attention one for attention ops, the weight format's linear one
// (efficiency.linear_compute_<fmt>, default efficiency.compute) for linears,
// efficiency.compute otherwise; MoE expert unpacking uses its own.

#include <cstdint>
#include <vector>

#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {

struct OpTiming {
  double flops = 0;        // operations at this context (incl. expert unpacking)
  double weight_bytes = 0; // values + scales/zeros
  double act_bytes = 0;    // activation reads + writes
  double kv_bytes = 0;     // KV reads + writes
  double compute_s = 0;    // ops / (efficiency * peak)
  double memory_s = 0;     // bytes / (memory efficiency * bandwidth)
  double overhead_s = 0;   // dispatch overheads
  double total_s = 0;      // combined per the op's charge, plus overhead
  bool compute_bound = false;
};

struct StepResult {
  std::vector<OpTiming> ops;  // in ModelGraph::order
  double compute_s = 0;       // sum of compute times
  double memory_s = 0;        // sum of memory times
  double overhead_s = 0;      // sum of dispatch overheads
  double total_s = 0;         // decode: sum of op times; prefill: max(compute, memory) + overhead
};

// Evaluates every op (for reports). `context_tokens` is the attended context
// for decode; ignored for prefill (the prompt length is in the graph).
StepResult EvaluateStep(const ModelGraph& g, const DeviceSpec& d, int64_t context_tokens);

// The datatype an operator computes in, whose peak (DeviceSpec::PeakOpsPerS)
// divides its operations (roofline/README.md, "Compute datatype"): linears by
// weight format (BF16 and the plan's INTb formats dequantise to BF16, f16 and
// f32 compute in theirs, ggml's quantized blocks take INT8 dot products with
// Q8 activations); attention in BF16; norms, elementwise ops and sampling in
// FP32; MoE expert unpacking in INT8.
ComputeDtype ComputeDtypeOf(const OpNode& n);

// Decode metrics from one step.
struct DecodeMetrics {
  double tpot_s = 0;          // time per output token (one step)
  double tps = 0;             // tokens per second per sequence = 1 / TPOT
  double batch_tokens_per_s = 0;  // batch / TPOT
};
DecodeMetrics DecodeFromStep(double step_s, int64_t batch);

// The graph folded for fast repeated evaluation: identical ops (the same op
// in every layer) merge into one term with a multiplicity, so one evaluation
// costs tens of terms instead of hundreds of nodes. Gives the same totals as
// EvaluateStep.
class CompiledGraph {
 public:
  explicit CompiledGraph(const ModelGraph& g);
  // Decode: TPOT at `context_tokens`. Prefill: TTFT.
  double StepSeconds(const DeviceSpec& d, int64_t context_tokens) const;
  size_t TermCount() const { return terms_.size(); }
  Phase phase() const { return phase_; }
  int64_t batch() const { return batch_; }
  // Seconds per operation on `d` for each efficiency slot the terms use, in
  // the order Term::compute_rate and Term::unpack_rate index (reuses `out`).
  void SlotSecondsPerOp(const DeviceSpec& d, std::vector<double>& out) const;

 private:
  friend class ContextProfile;  // folds the terms on one device (context_profile.hpp)
  struct Term {
    double flops, flops_per_ctx, unpack_ops, bytes, bytes_per_ctx, dispatches, head_dispatches, count;
    int64_t cap;
    int compute_rate;  // index into slots_: the efficiency of flops (class or linear format)
    int unpack_rate;   // index into slots_: the efficiency of unpack_ops
    bool sum_charge;
  };
  std::vector<Term> terms_;
  std::vector<int> slots_;  // the efficiency slots (evaluator.cpp) the terms use, each once
  Phase phase_;
  int64_t batch_;
};

}  // namespace lifeline
