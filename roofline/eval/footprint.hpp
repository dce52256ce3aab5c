#pragma once
// Memory footprint of one setting: what the device must hold to run a step,
// as opposed to what one step reads (the evaluator's bytes). One function for
// every command: explain, whatif, the sweep's capacity check.
//
// Rules (roofline/README.md, "Memory footprint"):
//   weights    every operator's stored parameters: packed values, per-group
//              scales/zeros, biases and norm gains; all experts of a MoE
//              layer (not only the selected ones); the whole embedding table
//              (not the rows one step reads); the LM head, counted once with
//              the embedding table when the model ties them and the plan
//              leaves lm_head unquantized (a quantized LM head is a second
//              copy). RoPE's cos/sin rows are computed per position: none.
//   KV cache   per layer, the bytes one token appends (the graph's kv_append:
//              K and V of the KV heads, or the compressed latent of MLA, at
//              the plan's KV dtype) times the tokens the layer keeps: the
//              context (decode) or the prompt (prefill), at most the sliding
//              window on sliding layers; times the batch.
//   workspace  the largest activation traffic of one operator (inputs read +
//              outputs written, at the context): the runtime reuses activation
//              buffers between kernels, so the peak is one kernel's live
//              tensors (logits for decode, the prompt's activations or the
//              unfused attention scores for prefill).

#include <cstdint>
#include <string>
#include <vector>

#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {

struct Footprint {
  double weight_bytes = 0;               // stored parameters incl. quantization metadata and embeddings
  double kv_cache_bytes = 0;             // KV cache at cached_tokens x batch
  double kv_cache_bytes_per_token = 0;   // one sequence's one token, summed over layers (before any window)
  double activation_workspace_bytes = 0; // largest single operator's activation inputs + outputs
  double total_bytes = 0;                // weights + KV cache + workspace
  int64_t cached_tokens = 0;             // tokens per sequence the cache holds (context or prompt)
  int64_t batch = 1;                     // sequences
};

// The footprint of graph `g` at `context_tokens` (decode; a prefill graph
// holds its prompt and ignores the argument).
Footprint ComputeFootprint(const ModelGraph& g, int64_t context_tokens);

// The same folded for sweeps: layers and operators with the same terms merge,
// so At(context) costs a few terms instead of a walk over the graph.
class FootprintProfile {
 public:
  explicit FootprintProfile(const ModelGraph& g);
  Footprint At(int64_t context_tokens) const;

 private:
  struct Kv {
    double bytes_per_token;  // summed over the layers with this window
    int64_t cap;             // sliding window; 0 = whole context
  };
  struct Act {
    double bytes, bytes_per_ctx;  // one operator's activation traffic: fixed + per attended token
    int64_t cap;
  };
  double weight_bytes_ = 0;
  std::vector<Kv> kv_;
  std::vector<Act> act_;
  bool decode_ = true;
  int64_t batch_ = 1, prompt_tokens_ = 0;
};

// True when the device states no memory_capacity_gb or the footprint fits it.
bool FitsDevice(const Footprint& f, const DeviceSpec& d);

// "needs 563.2 GB (weights 13.5 GB + KV cache 549.8 GB at 4096 tokens x batch
// 256 + workspace 0.02 GB) but nvidia_a100_80gb has 80.0 GB (memory_capacity_gb)".
std::string DescribeFootprint(const Footprint& f, const DeviceSpec& d);

}  // namespace lifeline
