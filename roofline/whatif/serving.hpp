#pragma once
// Serving on a system of devices: one layout (tp, pp, ep, batch) evaluated
// for decode TPOT, TTFT, system tokens/s, end-to-end request latency and the
// per-device memory footprint; the largest batch the KV cache allows; and the
// search for the layout with the highest tokens/s under TPOT and TTFT limits
// (`lifeline whatif --best`). Pure functions: nothing here prints.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "roofline/eval/parallel.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline::whatif {

struct ServingPoint {
  ParallelConfig layout;       // micro_batches resolved
  int64_t batch = 1;           // sequences in the whole system
  ParallelStep decode;         // at the setting's context
  ParallelStep prefill;        // of the setting's prompt, every sequence of the batch
  double tpot_s = 0;           // decode step time = time between two tokens of a sequence
  double tps_per_sequence = 0; // 1 / tpot_s
  double tokens_per_s = 0;     // batch / tpot_s: the system's output tokens per second
  double ttft_s = 0;           // prefill of the batch's prompts
  int64_t output_tokens = 0;   // request length (0: no request latency asked)
  // TTFT + sum over j = 1..N-1 of TPOT at context prompt + j (the first token
  // comes from the prefill; each later one attends one token more).
  double request_latency_s = 0;
  int64_t capacity_context = 0;  // tokens per sequence the cache must hold
  Footprint footprint;           // the fullest device at capacity_context (decode)
  Footprint prefill_footprint;   // the fullest device during the prefill
  bool fits = true;
  std::string why_not_fits;      // DescribeFootprint of the failing phase
};

// The context each sequence's cache must hold: the setting's context, or
// prompt + output_tokens when that is longer.
int64_t CapacityContext(const Setting& s, int64_t output_tokens);

// Evaluates one layout. Throws ConfigError for a layout the model or system
// does not allow (CheckParallelConfig).
ServingPoint EvaluateServing(const Setting& s, const SystemSpec& system, const ParallelConfig& layout,
                             int64_t batch, int64_t output_tokens);

// The largest batch (a multiple of layout.ep, at most kMaxBatch; pipeline
// micro-batches chosen automatically for each batch) whose decode
// footprint at `context_tokens` fits every device; 0 when not even the
// smallest does. Exact: the footprint grows with the batch, bisection.
int64_t LargestBatch(const Setting& s, const SystemSpec& system, const ParallelConfig& layout,
                     int64_t context_tokens);

struct BestOptions {
  double max_tpot_s = std::numeric_limits<double>::infinity();
  double max_ttft_s = std::numeric_limits<double>::infinity();
  int64_t max_batch = kMaxBatch;  // largest batch tried
  int64_t output_tokens = 0;      // request length for request_latency_s and capacity
};

struct BestCandidate {
  ServingPoint point;
  bool ok = false;        // meets every limit and fits
  std::string verdict;    // "winner", "meets the limits", or why it lost
};

struct BestResult {
  std::vector<BestCandidate> candidates;  // ok ones by tokens/s (the winner first), then the others
  std::vector<std::string> invalid_layouts;  // "tp 3: ..." layouts the model or system refuses
  size_t layouts_tried = 0;
  bool found() const { return !candidates.empty() && candidates.front().ok; }
};

// Every (tp, pp, ep) whose device count divides into the system's and every
// batch 1, 2, 4, ... (times ep) up to the largest that fits (and that largest
// itself), at most options.max_batch. The winner has the highest tokens/s
// under the limits; ties go to fewer devices, then the lower TPOT.
BestResult SearchBest(const Setting& s, const SystemSpec& system, const BestOptions& options);

}  // namespace lifeline::whatif
