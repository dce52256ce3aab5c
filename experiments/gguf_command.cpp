// `lifeline gguf`: writes a model from the zoo as a GGUF file llama.cpp loads,
// every linear in the ggml type its plan names, with seeded random weights or a
// llama2.c checkpoint's.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "experiments/commands.hpp"
#include "experiments/measure/gguf_model.hpp"
#include "common/error.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::cli {
namespace {

struct GgufOptions {
  std::string model;
  std::string plan;
  std::string out;
  std::string weights = "random";
  std::string tokenizer;
  uint64_t seed = 1;
  int threads = 2;
  bool list = false;
};

void PrintTensors(const measure::GgufTensorPlan& tp) {
  fmt::print("{:<28} {:>14} {:>6} {:>14}  {}\n", "tensor", "shape", "type", "bytes", "plan op");
  for (const auto& e : tp.tensors) {
    fmt::print("{:<28} {:>14} {:>6} {:>14}  {}\n", e.name, fmt::format("{}", fmt::join(e.shape, "x")),
               GgmlLayout(e.type).name, e.bytes, e.op);
  }
  fmt::print("{} tensors, {} weights, {} bytes: {:.4f} bits/weight ({:.4f} over the plan's linears)\n",
             tp.tensors.size(), tp.total_elements, tp.total_bytes, tp.BitsPerWeight(), tp.LinearBitsPerWeight());
}

void RunGguf(const GgufOptions& o) {
  const ModelArch arch = ResolveModelArch(o.model);
  const QuantPlan plan = ResolveQuantPlan(o.plan, arch);
  if (o.list) {
    PrintTensors(measure::ListModelTensors(arch, plan));
    return;
  }
  if (o.out.empty()) throw MakeConfigError("--out", "out", "missing", "the GGUF file to write", "--out model.gguf");
  if (o.threads < 1) throw MakeConfigError("--threads", "threads", fmt::format("is {}", o.threads), "1 or more");
  measure::GgufWeightSource src;
  if (o.weights != "random") src.checkpoint = o.weights;
  src.tokenizer = o.tokenizer;
  src.seed = o.seed;
  src.threads = o.threads;
  auto line = std::make_shared<ProgressLine>();
  if (line->on()) {
    auto last = std::make_shared<int>(-1);
    src.progress = [line, last](int64_t done, int64_t total) {
      const int pct = total > 0 ? static_cast<int>(100 * done / total) : 100;
      if (pct != *last) {
        *last = pct;
        line->Update(fmt::format("gguf: {:3d}% of {:.2f} GB", pct, total / 1e9), /*force=*/pct == 100);
      }
    };
  }
  const auto t0 = std::chrono::steady_clock::now();
  const measure::GgufWriteResult r = measure::WriteModelGguf(arch, plan, src, o.out);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  line->Finish();
  const auto& tp = r.tensors;
  fmt::print("wrote {}: {} ({} {}, {} weights), {} tensors, {} bytes ({:.3f} GiB), {:.4f} bits/weight "
             "({:.4f} over the plan's linears), {:.1f} s\n",
             o.out, arch.name, tp.arch, src.checkpoint.empty() ? fmt::format("random seed {}", o.seed) : "checkpoint",
             tp.total_elements, tp.tensors.size(), r.layout.file_bytes, r.layout.file_bytes / 1073741824.0,
             tp.BitsPerWeight(), tp.LinearBitsPerWeight(), s);
}

}  // namespace

void AddGgufCommand(CLI::App& app) {
  auto o = std::make_shared<GgufOptions>();
  CLI::App* c = app.add_subcommand(
      "gguf",
      "Write a model as a GGUF file for llama.cpp: architecture llama or qwen3, every linear in the ggml type of "
      "its plan (gguf-f32, gguf-f16, gguf-q8_0, gguf-w4, gguf-w2, gguf-w4w2-gateup or a plan YAML with `format:` "
      "rules), weights seeded random or from a llama2.c checkpoint");
  c->add_option("--model", o->model, "zoo name (stories260k, qwen3-1.7b ...), model YAML or HF config.json")->required();
  c->add_option("--plan", o->plan, "preset (gguf-f16, gguf-w4 ...) or plan YAML")->required();
  c->add_option("--out", o->out, "GGUF file to write (written to a temporary beside it, then renamed)");
  c->add_option("--weights", o->weights, "random (default) or a llama2.c checkpoint .bin");
  c->add_option("--tokenizer", o->tokenizer,
                "llama2.c tokenizer file (default: tok<vocab>.bin or tokenizer.bin beside the checkpoint; a "
                "synthetic vocabulary for random weights)");
  c->add_option("--seed", o->seed, "seed of the random weights (same seed, same file)");
  c->add_option("--threads", o->threads, "threads generating and quantizing rows (default 2)");
  c->add_flag("--list", o->list, "print the tensors (name, shape, type, bytes) and bits per weight; write nothing");
  c->callback([o] { RunGguf(*o); });
}

}  // namespace lifeline::cli
