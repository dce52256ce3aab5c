#pragma once
// Decode measurements on llama.cpp and the roofline's forecast beside them.
//
// A point is (model, plan, context): the model written as a GGUF with seeded
// random weights in the plan's ggml formats (cached), loaded by llama.cpp with
// mmap off, its KV cache filled to the context, then batch-1 decode of `gen`
// tokens timed `reps` times per round, in `rounds` rounds over all (model,
// plan) groups so formats are interleaved in time. While it runs, the CPU
// time other processes take is measured; repetitions that saw more than
// `max_other_cpu_share` of the machine busy elsewhere are set aside and
// measured again in extra rounds; a point still short of clean repetitions is
// kept but marked noisy. Points are cells of kind `measured` in the sweep
// store, so an interrupted run resumes and a matrix can hold measured and
// forecast cells side by side.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "roofline/eval/evaluator.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::measure {

struct MeasureOptions {
  int threads = 2;                   // llama.cpp CPU threads
  int gen = 64;                      // decoded tokens per repetition
  int reps = 1;                      // repetitions per point and round
  int rounds = 3;                    // passes over every (model, plan): formats interleaved in time
  bool flash_attn = false;           // llama.cpp's flash attention (on this CPU, decode at 8k is ~2x slower with it)
  int warmup = 4;                    // untimed tokens before the repetitions
  int prompt_tokens = 0;             // also time a prefill of this length (0 = no)
  std::string fill = "synth";        // KV fill: synth (random values) or prefill (computed)
  uint64_t seed = 1;                 // weights, tokens and KV values
  double max_other_cpu_share = 0.10; // other processes' share of all CPUs allowed during a repetition
  int max_attempts = 3;              // 1 + extra rounds for points short of clean repetitions
  int gpu_layers = 0;                // CUDA builds: layers offloaded (-1 = all)
  std::filesystem::path gguf_cache;  // where GGUF files are kept between runs
  bool progress = false;             // progress lines on stderr
};

// One measured point.
struct MeasuredPoint {
  std::string model, plan;      // names as given (zoo name / preset)
  int64_t context_tokens = 0;   // KV entries present before the timed tokens
  std::vector<double> rep_tps;  // tokens/s of each clean repetition (all, when none was clean)
  double tps_median = 0, tps_min = 0, tps_max = 0;
  double other_cpu_share = 0;   // largest over those repetitions
  double steal_share = 0;       // largest hypervisor steal share over them
  bool noisy = false;           // short of rounds x reps clean repetitions after the extra rounds
  int attempts = 0;             // llama.cpp runs of its (model, plan) group
  std::optional<double> prefill_tps;  // prompt_tokens / seconds (median), when asked
  nlohmann::json raw;           // the driver's JSON for this point (per-token times, system info)
};

// The GGUF for (arch, plan, seed) in `cache_dir`, written when missing; the
// file name carries a digest of the architecture, the plan and the writer, so
// a changed input gets a new file.
std::filesystem::path EnsureGguf(const ModelArch& arch, const QuantPlan& plan, uint64_t seed,
                                 const std::filesystem::path& cache_dir, bool progress);

// Measures every (model, plan, context) the store at `store_path` does not
// hold as done (cells of kind `measured`; a cell's identity includes the
// measurement settings and this machine), grouped per (model, plan) so each
// GGUF is loaded once, and returns all points in (model, plan, context) order.
struct GridResult {
  std::vector<MeasuredPoint> points;
  int measured_now = 0, reused = 0;
};
GridResult MeasureGrid(const std::vector<std::string>& models, const std::vector<std::string>& plans,
                       const std::vector<int64_t>& contexts, const MeasureOptions& o,
                       const std::filesystem::path& store_path);

// The roofline's decode TPS for the same point: exact fidelity, batch 1,
// averaged over the contexts the timed tokens attend to (context + 1 ..
// context + gen), as the measurement is. Fusion follows llama.cpp's CPU
// graph: every operator is its own kernel (`fused_attention` = flash attention
// on: attention as one kernel).
double ForecastTps(const ModelArch& arch, const QuantPlan& plan, const DeviceSpec& device, int64_t context_tokens,
                   int gen, bool fused_attention = false);
// The graph ForecastTps evaluates (build once, evaluate for many devices).
CompiledGraph ForecastGraph(const ModelArch& arch, const QuantPlan& plan, bool fused_attention = false);
double ForecastTps(const CompiledGraph& g, const DeviceSpec& device, int64_t context_tokens, int gen);

// A short description of this machine (CPU model, cores) recorded with every
// measurement: a point measured elsewhere is a different cell.
std::string MachineDescription();

// Median of `v` (mean of the middle two for an even count; 0 when empty).
double Median(std::vector<double> v);

nlohmann::json PointToJson(const MeasuredPoint& p);
MeasuredPoint PointFromJson(const nlohmann::json& j);

}  // namespace lifeline::measure
