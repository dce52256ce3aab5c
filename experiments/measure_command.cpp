// `lifeline measure` and `lifeline validate`: decodes timed on llama.cpp on
// this machine, beside the roofline's forecast for them.

#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "experiments/commands.hpp"
#include "experiments/measure/measure.hpp"
#include "experiments/measure/validate.hpp"
#include "reports/table.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/subprocess.hpp"

namespace lifeline::cli {
namespace {

namespace fs = std::filesystem;
using measure::MeasureOptions;

std::vector<int64_t> ParseContexts(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(item, &used);
      } catch (...) {
        used = 0;
      }
      if (used != item.size() || v < 0 || v > (1LL << 24)) {
        throw MakeConfigError(flag, item, "is not a context length", "tokens from 0 to 16777216, comma-separated",
                              "e.g. " + flag + " 512,2048,8192");
      }
      out.push_back(v);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.empty()) throw MakeConfigError(flag, s, "names no context", "comma-separated token counts", "");
  return out;
}

std::vector<std::string> SplitNames(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) {
    size_t start = 0;
    while (true) {
      const size_t comma = s.find(',', start);
      std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

fs::path DefaultGgufCache() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "lifeline" / "gguf";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "lifeline" / "gguf";
  return SourceDir() / "out" / "gguf-cache";
}

void AddMeasureFlags(CLI::App* c, MeasureOptions& m, std::string& cache) {
  c->add_option("--threads", m.threads, "llama.cpp CPU threads")->check(CLI::Range(1, 256));
  c->add_option("--gen", m.gen, "decoded tokens timed per repetition (64 or more)")->check(CLI::Range(8, 100000));
  c->add_option("--reps", m.reps, "repetitions per point in each round")->check(CLI::Range(1, 100));
  c->add_option("--rounds", m.rounds,
                "passes over every (model, plan), so formats are measured interleaved in time; the median over "
                "rounds x reps is reported, min and max kept")
      ->check(CLI::Range(1, 100));
  c->add_option("--flash-attn", m.flash_attn,
                "llama.cpp flash attention (default off: on this kind of CPU it halves decode speed at 8k)");
  c->add_option("--warmup", m.warmup, "untimed tokens before the repetitions")->check(CLI::Range(0, 1000));
  c->add_option("--fill", m.fill,
                "how the context is filled before timing: synth (random KV values in llama.cpp's state layout; "
                "decode time does not depend on them) or prefill (computed by a real prefill; minutes at 8k)")
      ->check(CLI::IsMember({"synth", "prefill"}));
  c->add_option("--seed", m.seed, "seed of the random weights, tokens and KV values");
  c->add_option("--max-other-cpu", m.max_other_cpu_share,
                "largest share of all CPUs other processes may take during a repetition before the point is "
                "measured again")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--attempts", m.max_attempts,
                "1 + the extra rounds allowed for points short of clean repetitions; after them a point is kept "
                "and marked noisy")
      ->check(CLI::Range(1, 20));
  c->add_option("--gpu-layers", m.gpu_layers, "layers offloaded to the GPU (CUDA build of llama.cpp; -1 = all)");
  c->add_option("--gguf-cache", cache, "where generated GGUF files are kept (default ~/.cache/lifeline/gguf)");
}

// Runs this lifeline binary with `args` (e.g. the probe), echoing what it prints.
void RunSelf(const std::vector<std::string>& args) {
  std::vector<std::string> argv{fs::read_symlink("/proc/self/exe").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const ProcessResult r = RunProcess(argv, /*merge_stderr=*/true);
  std::cerr << r.out;
  if (r.status != 0) throw Error("`lifeline " + args.front() + "` failed (exit " + std::to_string(r.status) + ")");
}

}  // namespace

void AddMeasureCommand(CLI::App& app) {
  struct Opts {
    std::vector<std::string> models{"qwen3-0.6b"}, plans{"gguf-w4"};
    std::string contexts = "512", device, out, store, format = "table", cache;
    int prompt = 0;
    MeasureOptions m;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "measure",
      "Time batch-1 decode of a model on llama.cpp on this machine (GGUF with seeded random weights in the plan's "
      "ggml formats) and print the forecast beside each measurement. Needs `scripts/setup.sh --with-llama-cpp`.");
  c->add_option("--model", o->models, "zoo name or model YAML/config.json; repeatable or comma-separated");
  c->add_option("--plan", o->plans,
                "gguf-f32, gguf-f16, gguf-q8_0, gguf-w4, gguf-w2, gguf-w4w2-gateup or a plan YAML whose rules use "
                "`format:`; repeatable or comma-separated");
  c->add_option("--context", o->contexts, "context depths, comma-separated (tokens in the KV cache before timing)");
  c->add_option("--prompt", o->prompt, "also time a prefill of this many tokens")->check(CLI::Range(0, 1 << 20));
  c->add_option("--device", o->device,
                "device spec for the forecast column (default: hwspec/this_machine.yaml, written by `lifeline probe`)");
  c->add_option("--store", o->store, "results store (default: OUT/measurements.db, or out/measure/measurements.db)");
  c->add_option("--out", o->out, "write measure.csv and measure.json here");
  c->add_option("--format", o->format, "table, csv or json on stdout")->check(CLI::IsMember({"table", "csv", "json"}));
  AddMeasureFlags(c, o->m, o->cache);
  c->callback([o] {
    MeasureOptions m = o->m;
    m.prompt_tokens = o->prompt;
    m.gguf_cache = o->cache.empty() ? DefaultGgufCache() : fs::path(o->cache);
    m.progress = StderrIsTty();
    const auto contexts = ParseContexts("--context", o->contexts);
    const auto models = SplitNames(o->models), plans = SplitNames(o->plans);
    const fs::path store = !o->store.empty() ? fs::path(o->store)
                           : !o->out.empty() ? fs::path(o->out) / "measurements.db"
                                             : fs::path("out/measure/measurements.db");
    std::optional<DeviceSpec> dev;
    if (!o->device.empty()) dev = ResolveDeviceSpec(o->device);
    else if (fs::is_regular_file(HwspecDir() / "this_machine.yaml")) dev = ResolveDeviceSpec("this_machine");
    const auto grid = measure::MeasureGrid(models, plans, contexts, m, store);

    reports::Table t;
    t.title = "llama.cpp decode on " + measure::MachineDescription() +
              (dev ? " vs lifeline forecast on device " + dev->name : "");
    t.columns = {"model", "plan", "context_tokens", "measured_tps", "measured_tps_min", "measured_tps_max",
                 "other_cpu_share", "noisy", "forecast_tps", "error_pct", "prefill_tps"};
    for (const auto& p : grid.points) {
      std::optional<double> f, e;
      if (dev) {
        const ModelArch a = ResolveModelArch(p.model);
        f = measure::ForecastTps(a, ResolveQuantPlan(p.plan, a), *dev, p.context_tokens, m.gen, m.flash_attn);
        e = 100.0 * (*f / p.tps_median - 1.0);
      }
      t.rows.push_back({p.model, p.plan, reports::Cell::Int(p.context_tokens), reports::Cell(p.tps_median, 3),
                        reports::Cell(p.tps_min, 3), reports::Cell(p.tps_max, 3),
                        reports::Cell(p.other_cpu_share, 3), p.noisy ? "true" : "false", reports::Cell::Opt(f, 3),
                        reports::Cell::Opt(e, 2), reports::Cell::Opt(p.prefill_tps, 2)});
    }
    t.notes.push_back(fmt::format(
        "{} points measured now, {} from {}; {} decoded tokens x {} repetition(s) x {} rounds, {} threads",
        grid.measured_now, grid.reused, store.string(), m.gen, m.reps, m.rounds, m.threads));
    if (!o->out.empty()) {
      CreateOutputDirectory(o->out, "--out");
      reports::WriteFileAtomic(fs::path(o->out) / "measure.csv", reports::ToCsv(t));
      nlohmann::json j = nlohmann::json::array();
      for (const auto& p : grid.points) j.push_back(measure::PointToJson(p));
      reports::WriteFileAtomic(fs::path(o->out) / "measure.json", j.dump(1) + "\n");
    }
    if (o->format == "csv") std::cout << reports::ToCsv(t);
    else if (o->format == "json") std::cout << reports::ToJson(t);
    else std::cout << reports::ToText(t);
  });
}

void AddValidateCommand(CLI::App& app) {
  struct Opts {
    measure::ValidateOptions v;
    std::vector<std::string> models, plans, fit;
    std::string contexts = "512,2048,8192", train_contexts = "512,2048", device, out, store, cache;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "validate",
      "Forecast vs llama.cpp measurement on this machine: zero-fit (probed device), calibrated on a fixed training "
      "subset and scored on held-out points, and measured vs forecast Gain%/Capture% of W4/W2-GateUp. Writes "
      "validation.csv, gain.csv, summary.json, validation.md, device_calibrated.yaml and figures/.");
  c->add_option("--out", o->out, "output directory")->required();
  c->add_option("--model", o->models, "models (default qwen3-0.6b, qwen3-1.7b, llama-3.2-3b); comma-separated");
  c->add_option("--plan", o->plans, "plans (default gguf-f16, gguf-w4, gguf-w2, gguf-w4w2-gateup)");
  c->add_option("--context", o->contexts, "contexts (default 512,2048,8192)");
  c->add_option("--train-model", o->v.train_model, "the model the calibrated mode is fitted on (default: the first)");
  c->add_option("--train-context", o->train_contexts, "contexts the calibrated mode is fitted on (default 512,2048)");
  c->add_option("--fit", o->fit,
                "device parameters the calibrated mode fits (default efficiency.attention_compute, overhead.dispatch_s; "
                "e.g. add efficiency.linear_compute_q4_0 to fit a format's matrix-vector rate too)");
  c->add_option("--device", o->device,
                "the probed device YAML (default: run `lifeline probe` now and keep its file as OUT/device_probed.yaml)");
  c->add_option("--store", o->store, "measurements store (default OUT/measurements.db; finished points are reused)");
  c->add_option("--statistic", o->v.statistic,
                "a point's measured TPS: median of its repetitions, or best (the fastest: on a shared host, "
                "neighbours only slow a run down)")
      ->check(CLI::IsMember({"median", "best"}));
  AddMeasureFlags(c, o->v.measure, o->cache);
  c->callback([o] {
    measure::ValidateOptions v = o->v;
    if (!o->models.empty()) v.models = SplitNames(o->models);
    if (!o->plans.empty()) v.plans = SplitNames(o->plans);
    v.contexts = ParseContexts("--context", o->contexts);
    v.train_contexts = ParseContexts("--train-context", o->train_contexts);
    for (const auto& k : SplitNames(o->fit)) v.fit.push_back(ParseDeviceParam(k));
    v.out = o->out;
    v.store = o->store.empty() ? v.out / "measurements.db" : fs::path(o->store);
    v.measure.gguf_cache = o->cache.empty() ? DefaultGgufCache() : fs::path(o->cache);
    v.measure.progress = StderrIsTty();
    CreateOutputDirectory(v.out, "--out");
    if (o->device.empty()) {
      v.device = v.out / "device_probed.yaml";
      if (!fs::is_regular_file(v.device)) RunSelf({"probe", "--write", v.device.string()});
    } else {
      v.device = fs::is_regular_file(o->device) ? fs::path(o->device) : HwspecDir() / (o->device + ".yaml");
    }
    const auto rep = measure::RunValidation(v);
    const auto& s = rep.summary;
    std::cout << fmt::format(
        "validate: {} points ({} measured now)\n"
        "  calibrated on {} at {}: held-out median |error| {}%, max {}% ({} points)\n"
        "  zero-fit (probed device): median |error| {}%, max {}%\n"
        "  Gain% of W4/W2-GateUp over W4, forecast - measured: max |diff| {} pp (calibrated), {} pp (zero-fit)\n"
        "  tables and figures in {}\n",
        s["points"].dump(), s["measured_now"].dump(), s["train_model"].get<std::string>(),
        s["train_contexts"].dump(), s["calibrated_heldout_median_abs_error_pct"].dump(),
        s["calibrated_heldout_max_abs_error_pct"].dump(), s["calibrated_heldout_points"].dump(),
        s["zero_fit_median_abs_error_pct"].dump(), s["zero_fit_max_abs_error_pct"].dump(),
        s["gain_pct_max_abs_diff_pp"].dump(), s["zero_fit_gain_pct_max_abs_diff_pp"].dump(), v.out.string());
  });
}

}  // namespace lifeline::cli
