// Throughput of the recovery loop on stories260K: one distillation training
// step (teacher forward without autograd + student forward/backward + AdamW
// on LoRA r=32 gate/up adapters, INT2 g32 fake-quantized gate/up) and batched
// synthetic-data generation with the KV cache. Compare with
// tests/bench/recovery/pytorch_step.py (same batch, length, threads):
// training tokens/s, and generation positions/s (batch x the longest
// sequence, which does not depend on where the random samples stop).
//
//   recovery_bench --benchmark_min_time=2   # env LIFELINE_BENCH_THREADS (default 2)

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "common/paths.hpp"
#include "recovery/data/synthetic.hpp"
#include "recovery/model/allocator.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "recovery/model/shared_paths.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/train/distill.hpp"

namespace lifeline::recovery {
namespace {

int Threads() {
  const char* env = std::getenv("LIFELINE_BENCH_THREADS");
  return env ? std::atoi(env) : 2;
}

double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

bool HaveModel(benchmark::State& state) {
  if (std::filesystem::exists(Stories260kModelPath())) return true;
  state.SkipWithError("shared stories260K absent (set LIFELINE_SHARED_DIR)");
  return false;
}

void BM_DistillStep(benchmark::State& state) {
  if (!HaveModel(state)) return;
  at::set_num_threads(Threads());
  const int64_t B = state.range(0), T = state.range(1);
  const Checkpoint ck = LoadLlama2cCheckpoint(Stories260kModelPath());
  Decoder teacher = BuildDecoder(ck);
  Decoder student = BuildDecoder(ck);
  FakeQuantizeLayers(student, {"mlp.gate_proj", "mlp.up_proj"}, {2, 32, QuantScheme::kAsymmetric});
  at::manual_seed(0);
  LoraConfig lcfg;  // r = 32, alpha = 64, gate/up
  AttachLora(student, lcfg);
  teacher->eval();
  student->train();
  std::vector<at::Tensor> params;
  for (const auto& [name, p] : LoraParameters(student)) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-3).weight_decay(0.0));
  const at::Tensor ids = at::randint(3, 512, {B, T}, at::kLong);
  for (auto _ : state) {
    opt.zero_grad();
    at::Tensor teacher_logits;
    {
      torch::NoGradGuard no_grad;
      teacher_logits = teacher->forward(ids);
    }
    at::Tensor loss = KlDivergence(teacher_logits, student->forward(ids), at::Tensor());
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(B * T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = Threads();
  state.counters["peak_rss_MiB"] = PeakRssMiB();
}
BENCHMARK(BM_DistillStep)->Args({8, 256})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Generate(benchmark::State& state) {
  if (!HaveModel(state)) return;
  at::set_num_threads(Threads());
  Decoder teacher = BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath()));
  SyntheticConfig cfg;
  cfg.samples = state.range(0);
  cfg.batch = state.range(0);
  cfg.max_len = state.range(1);
  int64_t tokens = 0, positions = 0;
  for (auto _ : state) {
    const auto seqs = GenerateSynthetic(teacher, cfg, {1, 2});
    size_t longest = 0;
    for (const auto& s : seqs) {
      tokens += static_cast<int64_t>(s.size());
      longest = std::max(longest, s.size());
    }
    // Every step runs the whole batch until the last sequence ends.
    positions += static_cast<int64_t>(seqs.size() * longest);
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["positions_per_s"] =
      benchmark::Counter(static_cast<double>(positions), benchmark::Counter::kIsRate);
  state.counters["peak_rss_MiB"] = PeakRssMiB();
}
BENCHMARK(BM_Generate)->Args({64, 256})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace lifeline::recovery

// Runs in the process environment lifeline-recover runs in: the OpenMP wait
// policy `lifeline` sets before starting it (re-exec'd with it when unset) and
// the same malloc settings.
int main(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    lifeline::SetLibTorchChildEnvironment();
    execv("/proc/self/exe", argv);
    std::perror("recovery_bench: re-exec with OMP_WAIT_POLICY=PASSIVE");
    return 1;
  }
  lifeline::recovery::TuneAllocatorForTraining();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
