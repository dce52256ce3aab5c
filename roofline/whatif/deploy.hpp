#pragma once
// Deployment choices on top of one setting: LoRA adapters attached beside the
// quantized linears (their cost against the same plan without them),
// speculative decoding (a draft model proposes k tokens, the target verifies
// them in one step; Leviathan et al. 2023) and chunked prefill (the prompt in
// chunks, each attending to every earlier token; Sarathi, Agrawal et al.
// 2023). Pure functions over the builder and the evaluator.

#include <cstdint>
#include <string>
#include <vector>

#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {

// ----- LoRA adapters ---------------------------------------------------------

// `p` with its `adapters:` removed.
QuantPlan WithoutAdapters(const QuantPlan& p);

// What a plan's adapters add to one step, against the same plan without them.
struct AdapterCost {
  int attached_linears = 0;   // linears carrying an attached adapter (A and B ops)
  double weight_bytes = 0;    // A and B bytes read per step
  double flops = 0;           // A and B operations per step (at the context)
  double act_bytes = 0;       // activation traffic they add (the adapters' own and a fused kernel's broken edges)
  double dispatches = 0;      // extra kernel launches per step
  double step_s = 0;          // the step with the adapters (decode: TPOT; prefill: TTFT)
  double step_s_without = 0;  // the same plan without adapters
  double tps_cost_pct = 0;    // 100 (1 - step_s_without / step_s): decode TPS lost to the adapters
  std::vector<std::string> notes;  // merged adapters re-quantized into low-bit weights
};
// `g` is built with a plan that has adapters; the plan without them is built
// with the same options. Decode steps are evaluated at `context_tokens`.
AdapterCost EvaluateAdapterCost(const ModelGraph& g, const DeviceSpec& d, int64_t context_tokens);

// ----- speculative decoding --------------------------------------------------

// Expected tokens accepted per target step with k drafted tokens, each
// accepted with probability `acceptance` (Leviathan et al. 2023, eq. 1):
// (1 - a^(k+1)) / (1 - a); k + 1 at a = 1.
double ExpectedTokensPerStep(int64_t k, double acceptance);

struct SpeculativeSpec {
  ModelArch draft;         // the draft model
  QuantPlan draft_plan;    // its plan
  int64_t k = 4;           // tokens drafted per target step
  double acceptance = 0.8; // probability that the target accepts a drafted token
};

struct SpeculativeResult {
  double tokens_per_step = 0;  // expected tokens per target step, E
  double draft_s = 0;          // k draft decode steps (contexts c .. c+k-1)
  double verify_s = 0;         // the target on k+1 tokens at context c
  double step_s = 0;           // draft_s + verify_s
  double tps = 0;              // tokens/s per sequence: E / step_s
  double target_tps = 0;       // the target decoding alone: 1 / TPOT
  double speedup = 0;          // tps / target_tps
};

// One speculative step: the drafts at `decode` options, the verification as a
// target step over k + 1 new tokens after context - 1 cached ones, with
// logits at every position, charged per operator like a decode step.
SpeculativeResult EvaluateSpeculative(const ModelArch& target, const QuantPlan& target_plan,
                                      const SpeculativeSpec& spec, const BuildOptions& decode,
                                      const DeviceSpec& d, int64_t context_tokens);
// The same from given step times (draft step times summed over the k drafts).
SpeculativeResult SpeculativeFromTimes(int64_t k, double acceptance, double draft_s, double verify_s,
                                       double target_step_s);

// ----- chunked prefill -------------------------------------------------------

// Most chunks one prefill is split into (each chunk is a graph build).
inline constexpr int64_t kMaxPrefillChunks = 4096;

struct ChunkedPrefill {
  int64_t chunk_tokens = 0;
  std::vector<double> chunk_s;  // TTFT of each chunk step (max(compute, memory) + overhead)
  double ttft_s = 0;            // sum over the chunks
  double ttft_unchunked_s = 0;  // the whole prompt as one step
};
// Splits `prefill.prompt_tokens` into chunks of `chunk_tokens` (the last one
// shorter); chunk j attends to the j * chunk_tokens tokens before it. `where`
// names the chunk setting in errors.
ChunkedPrefill EvaluateChunkedPrefill(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& prefill,
                                      const DeviceSpec& d, int64_t chunk_tokens, const std::string& where);

}  // namespace lifeline
