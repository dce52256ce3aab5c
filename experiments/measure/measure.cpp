#include "experiments/measure/measure.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "experiments/measure/gguf_model.hpp"
#include "experiments/measure/llama_runner.hpp"
#include "experiments/sweep/sha256.hpp"
#include "experiments/sweep/store.hpp"
#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"

namespace lifeline::measure {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Bumped when the writer's output for the same inputs changes.
constexpr int kGgufWriterVersion = 1;

json ArchJson(const ModelArch& a) {
  json layers = json::array();
  for (auto k : a.layer_types) layers.push_back(k == AttentionKind::kFull ? "full" : "sliding");
  return json{{"model_type", a.model_type},
              {"hidden_size", a.hidden_size},
              {"intermediate_size", a.intermediate_size},
              {"num_hidden_layers", a.num_hidden_layers},
              {"num_attention_heads", a.num_attention_heads},
              {"num_key_value_heads", a.num_key_value_heads},
              {"head_dim", a.head_dim},
              {"vocab_size", a.vocab_size},
              {"max_position_embeddings", a.max_position_embeddings},
              {"tie_word_embeddings", a.tie_word_embeddings},
              {"attention_bias", a.attention_bias},
              {"qk_norm", a.qk_norm},
              {"rms_norm_eps", a.rms_norm_eps},
              {"rope_theta", a.rope_theta},
              {"num_local_experts", a.num_local_experts},
              {"sliding_window", a.sliding_window},
              {"layer_types", layers}};
}

json PlanJson(const QuantPlan& p) {
  json rules = json::array();
  for (const auto& r : p.rules) rules.push_back({{"pattern", r.pattern}, {"format", r.format.Label()}});
  return json{{"rules", rules}, {"kv_cache_dtype", KvDtypeName(p.kv_dtype)}};
}

}  // namespace

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string MachineDescription() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 2);
      break;
    }
  }
  return fmt::format("{} ({} CPUs)", model, sysconf(_SC_NPROCESSORS_ONLN));
}

fs::path EnsureGguf(const ModelArch& arch, const QuantPlan& plan, uint64_t seed, const fs::path& cache_dir,
                    bool progress) {
  const json key = {{"arch", ArchJson(arch)}, {"plan", PlanJson(plan)}, {"seed", seed},
                    {"writer", kGgufWriterVersion}};
  const std::string digest = sweep::Sha256Hex(key.dump()).substr(0, 12);
  const fs::path path = cache_dir / fmt::format("{}__{}__seed{}__{}.gguf", arch.name, plan.name, seed, digest);
  if (fs::is_regular_file(path)) return path;
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec) throw Error("cannot create the GGUF cache directory " + cache_dir.string() + ": " + ec.message());
  if (progress) std::fprintf(stderr, "measure: writing %s\n", path.string().c_str());
  GgufWeightSource src;
  src.seed = seed;
  const double t0 = sweep::NowSeconds();
  const GgufWriteResult w = WriteModelGguf(arch, plan, src, path);
  if (progress) {
    std::fprintf(stderr, "measure: wrote %.2f GB (%.3f bits per weight) in %.0f s\n", w.layout.file_bytes / 1e9,
                 w.tensors.BitsPerWeight(), sweep::NowSeconds() - t0);
  }
  return path;
}

CompiledGraph ForecastGraph(const ModelArch& arch, const QuantPlan& plan, bool fused_attention) {
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  b.fusion = fused_attention ? FusionMode::kPaper : FusionMode::kNone;
  b.phase = Phase::kDecode;
  b.batch = 1;
  return CompiledGraph(BuildModelGraph(arch, plan, b));
}

double ForecastTps(const CompiledGraph& g, const DeviceSpec& device, int64_t context_tokens, int gen) {
  double seconds = 0;
  // The i-th timed token attends to the filled context plus the i tokens before it and itself.
  for (int i = 0; i < gen; ++i) seconds += g.StepSeconds(device, context_tokens + i + 1);
  return gen / seconds;
}

double ForecastTps(const ModelArch& arch, const QuantPlan& plan, const DeviceSpec& device, int64_t context_tokens,
                   int gen, bool fused_attention) {
  return ForecastTps(ForecastGraph(arch, plan, fused_attention), device, context_tokens, gen);
}

namespace {

void CheckContexts(const ModelArch& arch, const std::vector<int64_t>& contexts, const MeasureOptions& o) {
  for (int64_t c : contexts) {
    if (c < 0 || (arch.max_position_embeddings > 0 && c + o.gen + o.warmup > arch.max_position_embeddings)) {
      throw MakeConfigError("--context", std::to_string(c), "outside the model's context",
                            fmt::format("0 .. {} (max_position_embeddings {} minus the {} decoded tokens)",
                                        arch.max_position_embeddings - o.gen - o.warmup,
                                        arch.max_position_embeddings, o.gen + o.warmup),
                            "");
    }
  }
}

// One repetition of one point as the driver reported it.
struct Sample {
  double tps = 0, other_cpu_share = 0, steal_share = 0;
};

// One llama.cpp process: `reps` repetitions at each context.
struct DriverRun {
  std::map<int64_t, std::vector<Sample>> samples;
  std::map<int64_t, json> raw;  // per context: the driver's record (per-token times, kv cells)
  std::optional<double> prefill_tps;
  json model_info;
};

DriverRun RunOnce(const fs::path& gguf, const std::vector<int64_t>& contexts, int reps, bool prefill,
                  const MeasureOptions& o) {
  std::string depths;
  for (int64_t c : contexts) depths += (depths.empty() ? "" : ",") + std::to_string(c);
  std::vector<std::string> args = {"bench",      gguf.string(),             "--depths",  depths,
                                   "--gen",      std::to_string(o.gen),     "--reps",    std::to_string(reps),
                                   "--warmup",   std::to_string(o.warmup),  "--threads", std::to_string(o.threads),
                                   "--fill",     o.fill,                    "--seed",    std::to_string(o.seed),
                                   "--flash-attn", o.flash_attn ? "on" : "off",
                                   "--gpu-layers", std::to_string(o.gpu_layers)};
  if (prefill && o.prompt_tokens > 0) {
    args.push_back("--prompt");
    args.push_back(std::to_string(o.prompt_tokens));
  }
  const json r = RunLlamaDriver(args);
  DriverRun out;
  out.model_info = {{"model_desc", r["model_desc"]}, {"model_size_bytes", r["model_size_bytes"]},
                    {"model_n_params", r["model_n_params"]}, {"system_info", r["system_info"]},
                    {"flash_attn", r["flash_attn"]}, {"gguf", gguf.filename().string()}};
  if (r.contains("prefill") && !r["prefill"].is_null()) {
    std::vector<double> v;
    for (const auto& rep : r["prefill"]["reps"]) v.push_back(rep["tokens_per_s"].get<double>());
    out.prefill_tps = Median(v);
  }
  for (const auto& d : r["decode"]) {
    const int64_t c = d["depth"].get<int64_t>();
    for (const auto& rep : d["reps"]) {
      out.samples[c].push_back({rep["tokens_per_s"].get<double>(), rep["other_cpu_share"].get<double>(),
                                rep["steal_share"].get<double>()});
    }
    out.raw[c] = d;
  }
  return out;
}

}  // namespace

namespace {

sweep::SweepCell MeasuredCell(const std::string& model, const ModelArch& arch, const std::string& plan_name,
                              const QuantPlan& plan, int64_t context, const MeasureOptions& m) {
  json rules = json::array();
  for (const auto& r : plan.rules) rules.push_back({{"pattern", r.pattern}, {"format", r.format.Label()}});
  sweep::SweepCell c;
  c.kind = sweep::CellKind::kMeasured;
  c.inputs = {{"kind", "measured"},
              {"model", model},
              {"arch", {{"hidden_size", arch.hidden_size},
                        {"intermediate_size", arch.intermediate_size},
                        {"num_hidden_layers", arch.num_hidden_layers},
                        {"num_attention_heads", arch.num_attention_heads},
                        {"num_key_value_heads", arch.num_key_value_heads},
                        {"head_dim", arch.head_dim},
                        {"vocab_size", arch.vocab_size},
                        {"model_type", arch.model_type}}},
              {"plan", plan_name},
              {"plan_rules", rules},
              {"kv_cache_dtype", KvDtypeName(plan.kv_dtype)},
              {"context_tokens", context},
              {"threads", m.threads},
              {"gen", m.gen},
              {"reps", m.reps},
              {"rounds", m.rounds},
              {"flash_attn", m.flash_attn},
              {"warmup", m.warmup},
              {"fill", m.fill},
              {"seed", m.seed},
              {"gpu_layers", m.gpu_layers},
              {"machine", MachineDescription()}};
  c.labels = {{"model", model}, {"plan", plan_name}};
  c.canonical = c.inputs.dump();
  c.id = sweep::Sha256Hex(c.canonical).substr(0, 16);
  return c;
}

}  // namespace

GridResult MeasureGrid(const std::vector<std::string>& models, const std::vector<std::string>& plans,
                       const std::vector<int64_t>& contexts, const MeasureOptions& o, const fs::path& store_path) {
  std::map<std::string, ModelArch> arch;
  std::map<std::string, QuantPlan> plan;
  std::vector<sweep::SweepCell> cells;
  for (const auto& m : models) {
    arch[m] = ResolveModelArch(m);
    CheckContexts(arch[m], contexts, o);
    for (const auto& p : plans) {
      plan[m + "|" + p] = ResolveQuantPlan(p, arch[m]);
      // Fail before measuring anything when a model cannot be written in a plan's formats.
      ListModelTensors(arch[m], plan[m + "|" + p]);
      for (int64_t c : contexts) cells.push_back(MeasuredCell(m, arch[m], p, plan[m + "|" + p], c, o));
    }
  }
  if (!store_path.parent_path().empty()) fs::create_directories(store_path.parent_path());
  sweep::Store store(store_path);
  store.AddCells(cells);
  store.ResetStale();
  const auto statuses = store.Statuses();
  const sweep::Owner self = sweep::Owner::Self();
  GridResult out;

  // The (model, plan) groups with points to measure, in the order given.
  struct Group {
    std::string model, plan;
    fs::path gguf;
    std::vector<std::string> ids;
    std::vector<int64_t> contexts;
    std::map<int64_t, std::vector<Sample>> clean, busy;
    std::map<int64_t, json> raw;
    json info;
    std::optional<double> prefill_tps;
    int runs = 0;
  };
  std::vector<Group> groups;
  size_t k = 0;
  for (const auto& m : models) {
    for (const auto& p : plans) {
      Group g;
      g.model = m;
      g.plan = p;
      for (int64_t c : contexts) {
        const auto& cell = cells[k++];
        if (statuses.at(cell.id) == sweep::CellStatus::kDone) {
          ++out.reused;
          continue;
        }
        g.ids.push_back(cell.id);
        g.contexts.push_back(c);
      }
      if (!g.ids.empty()) groups.push_back(std::move(g));
    }
  }
  for (auto& g : groups) {
    if (store.Claim(g.ids, self, {sweep::CellStatus::kPending, sweep::CellStatus::kFailed}).size() != g.ids.size()) {
      throw Error("another process is measuring " + g.model + " " + g.plan + " into " + store_path.string() +
                  "; wait for it or use another --store");
    }
  }
  try {
    for (auto& g : groups) {
      g.gguf = EnsureGguf(arch[g.model], plan[g.model + "|" + g.plan], o.seed, o.gguf_cache, o.progress);
    }
    // Rounds: every group once per round, so the formats of a model are
    // measured close together in time and a slow spell of the machine is
    // spread over all of them rather than landing on one. A repetition during
    // which other processes took more than the allowed CPU share is set aside;
    // points short of clean repetitions get extra rounds, up to max_attempts - 1.
    const int wanted = o.rounds * o.reps;
    const int max_rounds = o.rounds + std::max(0, o.max_attempts - 1);
    for (int round = 1; round <= max_rounds; ++round) {
      bool any = false;
      for (auto& g : groups) {
        std::vector<int64_t> todo;
        for (int64_t c : g.contexts) {
          if (round <= o.rounds || static_cast<int>(g.clean[c].size()) < wanted) todo.push_back(c);
        }
        if (todo.empty()) continue;
        any = true;
        if (o.progress) {
          std::fprintf(stderr, "measure: round %d: %s %s at %zu context(s)\n", round, g.model.c_str(), g.plan.c_str(),
                       todo.size());
        }
        const DriverRun run = RunOnce(g.gguf, todo, o.reps, /*prefill=*/g.runs == 0, o);
        ++g.runs;
        if (run.prefill_tps) g.prefill_tps = run.prefill_tps;
        g.info = run.model_info;
        for (int64_t c : todo) {
          for (const Sample& smp : run.samples.at(c)) {
            (smp.other_cpu_share > o.max_other_cpu_share ? g.busy : g.clean)[c].push_back(smp);
          }
          g.raw[c] = run.raw.at(c);
        }
      }
      if (!any) break;
      if (round >= o.rounds) {
        bool short_of_clean = false;
        for (auto& g : groups) {
          for (int64_t c : g.contexts) short_of_clean |= static_cast<int>(g.clean[c].size()) < wanted;
        }
        if (!short_of_clean) break;
        if (round < max_rounds) {
          if (o.progress) std::fprintf(stderr, "measure: other processes were busy; measuring those points again\n");
          sleep(5);
        }
      }
    }
  } catch (const Error& e) {
    for (auto& g : groups) {
      std::vector<std::pair<std::string, sweep::CellResult>> results;
      for (const auto& id : g.ids) {
        sweep::CellResult r;
        r.status = sweep::CellStatus::kFailed;
        r.error = e.what();
        results.push_back({id, r});
      }
      store.Finish(results, self);
    }
    throw;
  }
  for (auto& g : groups) {
    std::vector<std::pair<std::string, sweep::CellResult>> results;
    for (size_t i = 0; i < g.ids.size(); ++i) {
      const int64_t c = g.contexts[i];
      MeasuredPoint p;
      p.model = g.model;
      p.plan = g.plan;
      p.context_tokens = c;
      std::vector<Sample> use = g.clean[c];
      p.noisy = static_cast<int>(use.size()) < o.rounds * o.reps;
      if (use.empty()) use = g.busy[c];  // nothing clean: keep what there is, marked noisy
      for (const Sample& smp : use) {
        p.rep_tps.push_back(smp.tps);
        p.other_cpu_share = std::max(p.other_cpu_share, smp.other_cpu_share);
        p.steal_share = std::max(p.steal_share, smp.steal_share);
      }
      p.tps_median = Median(p.rep_tps);
      p.tps_min = *std::min_element(p.rep_tps.begin(), p.rep_tps.end());
      p.tps_max = *std::max_element(p.rep_tps.begin(), p.rep_tps.end());
      p.attempts = g.runs;
      p.prefill_tps = g.prefill_tps;
      p.raw = g.raw[c];
      p.raw.update(g.info);
      p.raw["busy_reps_set_aside"] = g.busy[c].size();
      sweep::CellResult r;
      r.outputs = PointToJson(p);
      r.seed = static_cast<int64_t>(o.seed);
      results.push_back({g.ids[i], r});
      ++out.measured_now;
    }
    store.Finish(results, self);
  }
  for (const auto& cell : cells) {
    const auto row = store.Get(cell.id);
    if (!row || row->status != sweep::CellStatus::kDone) throw InternalError("measure: cell " + cell.id + " not done");
    out.points.push_back(PointFromJson(row->outputs));
  }
  return out;
}

json PointToJson(const MeasuredPoint& p) {
  json j = {{"model", p.model},
            {"plan", p.plan},
            {"context_tokens", p.context_tokens},
            {"rep_tps", p.rep_tps},
            {"tps_median", p.tps_median},
            {"tps_min", p.tps_min},
            {"tps_max", p.tps_max},
            {"other_cpu_share", p.other_cpu_share},
            {"steal_share", p.steal_share},
            {"noisy", p.noisy},
            {"attempts", p.attempts},
            {"prefill_tps", p.prefill_tps ? json(*p.prefill_tps) : json(nullptr)},
            {"raw", p.raw}};
  return j;
}

MeasuredPoint PointFromJson(const json& j) {
  MeasuredPoint p;
  p.model = j.at("model").get<std::string>();
  p.plan = j.at("plan").get<std::string>();
  p.context_tokens = j.at("context_tokens").get<int64_t>();
  p.rep_tps = j.at("rep_tps").get<std::vector<double>>();
  p.tps_median = j.at("tps_median").get<double>();
  p.tps_min = j.at("tps_min").get<double>();
  p.tps_max = j.at("tps_max").get<double>();
  p.other_cpu_share = j.at("other_cpu_share").get<double>();
  p.steal_share = j.value("steal_share", 0.0);
  p.noisy = j.at("noisy").get<bool>();
  p.attempts = j.at("attempts").get<int>();
  if (j.contains("prefill_tps") && !j["prefill_tps"].is_null()) p.prefill_tps = j["prefill_tps"].get<double>();
  p.raw = j.value("raw", json::object());
  return p;
}

}  // namespace lifeline::measure
