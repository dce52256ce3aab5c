#pragma once
// One model served on several devices of a SystemSpec: tensor parallelism
// (TP: heads, FFN columns and the LM head's vocabulary split over `tp`
// devices, two all-reduces of the activations per layer), pipeline
// parallelism (PP: layers split into `pp` stages, activations sent between
// stages, micro-batches), expert parallelism (EP: `ep` data-parallel groups
// run attention on their share of the batch, and each MoE layer's routed
// experts are split over the groups, with an all-to-all dispatch and combine).
// Devices used: tp x pp x ep. roofline/README.md ("Several devices") gives
// every formula and its source.
//
// Each device's work is an ordinary operator graph: the builder runs on the
// shard's architecture (ShardArch), so activations, KV cache and weights per
// device follow from the same counts as on one device.

#include <cstdint>
#include <string>
#include <vector>

#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/system_spec.hpp"

namespace lifeline {

struct ParallelConfig {
  int64_t tp = 1;             // tensor-parallel degree
  int64_t pp = 1;             // pipeline stages
  int64_t ep = 1;             // expert-parallel degree (data-parallel attention groups)
  int64_t micro_batches = 0;  // pipeline micro-batches; 0 = the largest divisor of batch/ep that is <= pp
  int64_t Devices() const { return tp * pp * ep; }
};

// Collective costs on an interconnect (bytes each device sends, seconds).
struct CommCost {
  double bytes = 0;    // bytes one device puts on its link
  double seconds = 0;  // bytes / link bandwidth + latency terms
};
// Ring all-reduce of an `message_bytes` tensor over n devices: each device
// sends 2 (n-1)/n of it (reduce-scatter + all-gather). Latency: 2 (n-1) hops
// on a ring, 2 messages through a switch.
CommCost AllReduce(double message_bytes, int64_t n, const Interconnect& ic);
// All-to-all where each device holds `bytes_per_device` spread evenly over
// the n devices (its own share stays): a switch carries (n-1)/n of it per
// link, plus one latency; a unidirectional ring carries (n-1)/2 of it per link
// (messages travel 1..n-1 hops), plus n-1 hop latencies.
CommCost AllToAll(double bytes_per_device, int64_t n, const Interconnect& ic);
// One message between neighbouring pipeline stages.
CommCost PointToPoint(double bytes, const Interconnect& ic);

// The per-device architecture under tensor parallelism `tp`: query heads,
// KV heads (replicated when tp exceeds them), FFN, expert and shared-expert
// widths and the vocabulary (rounded up) divided by tp; head_dim and an MLA
// latent kept (every head reads the whole latent). Throws ConfigError at `where`
// (the flag) naming the model key that tp does not divide.
ModelArch ShardArch(const ModelArch& arch, int64_t tp, const std::string& where);

// Checks a layout against the model, the batch and the system; ConfigError at
// `where` ("--tp", "--pp", "--ep", "--micro-batches", or "--batch") naming the
// key and the values that would work. Returns the micro-batch count used.
int64_t CheckParallelConfig(const ModelArch& arch, const ParallelConfig& c, int64_t batch, const SystemSpec& s,
                            Fidelity fidelity);

// One step of the whole system.
struct ParallelStep {
  double step_s = 0;           // decode: time between two tokens of a sequence (TPOT); prefill: TTFT
  double tokens_per_s = 0;     // decode: batch / step_s (all sequences); prefill: batch x prompt / step_s
  int64_t micro_batches = 1;
  int64_t micro_batch = 1;     // sequences per micro-batch per EP group
  std::vector<double> stage_s; // one micro-batch's time in each stage, collectives included
  double tp_allreduce_message_bytes = 0;  // one all-reduce's tensor (tokens x hidden x 2 bytes)
  double tp_allreduce_bytes_per_layer = 0; // bytes one device sends per layer for TP (2 all-reduces)
  double ep_alltoall_bytes_per_layer = 0;  // bytes one device sends per MoE layer (dispatch + combine)
  double pp_transfer_bytes = 0;            // activations sent between two stages per micro-batch
  double tp_comm_s = 0, ep_comm_s = 0, pp_comm_s = 0;  // one micro-batch's collective time, all stages
  double bubble_fraction = 0;  // share of a stage's time it idles in a decode step (0 without PP)
};

// The shard graphs of one (model, plan, options, system, layout), built once
// and evaluated at any context.
class ParallelModel {
 public:
  // `options.batch` is the whole system's batch.
  ParallelModel(const ModelArch& arch, const QuantPlan& plan, const BuildOptions& options, const SystemSpec& system,
                const ParallelConfig& config);
  // Decode at `context_tokens`, or the prefill the options describe.
  ParallelStep Evaluate(int64_t context_tokens) const;
  // The fullest device (largest footprint over stages) holding `context_tokens`
  // per sequence (decode; prefill holds the prompt).
  Footprint DeviceFootprint(int64_t context_tokens) const;
  bool Fits(int64_t context_tokens) const { return FitsDevice(DeviceFootprint(context_tokens), system_.device); }
  const ParallelConfig& config() const { return config_; }
  int64_t micro_batches() const { return micro_batches_; }
  const SystemSpec& system() const { return system_; }
  const ModelArch& shard() const { return shard_; }
  const std::vector<ModelGraph>& stages() const { return stages_; }

 private:
  struct StageComm {
    int64_t layers = 0, moe_layers = 0;
    bool last = false;
  };
  SystemSpec system_;
  ParallelConfig config_;
  ModelArch shard_;
  BuildOptions options_;
  int64_t micro_batches_ = 1, micro_batch_ = 1;
  std::vector<ModelGraph> stages_;  // one per pipeline stage: the stage's ops of the shard graph
  std::vector<StageComm> comm_;
  int64_t experts_per_tok_ = 0;
};

// True for a routed-expert operator (split by EP): `*.mlp.experts.*` except
// the combine, which each group runs on its own tokens.
bool IsRoutedExpertOp(const OpNode& n);

}  // namespace lifeline
