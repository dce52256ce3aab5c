#include "experiments/whatif_deploy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "common/yaml_util.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/whatif/deploy.hpp"

namespace lifeline::cli {
namespace {

using reports::Cell;

// Most grid points a sweep with deployment keys evaluates: each point builds
// its graphs again (milliseconds), unlike whatif's compiled sweeps.
constexpr uint64_t kMaxDeployPoints = 20000;

struct Arg {
  std::string key, value, arg;
};

Arg SplitArg(const std::string& text, const std::string& option) {
  const size_t eq = text.find('=');
  const std::string arg = option + " " + text;
  if (eq == std::string::npos) throw MakeConfigError(arg, text, "no '=' in the argument", "key=value", "");
  Arg a{Trim(text.substr(0, eq)), Trim(text.substr(eq + 1)), arg};
  if (a.value.empty()) throw MakeConfigError(arg, a.key, "empty value", "key=value with a value", "");
  return a;
}

double Number(const Arg& a, const std::string& value) {
  size_t used = 0;
  double d = 0;
  try {
    d = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size() || !std::isfinite(d)) {
    throw MakeConfigError(a.arg, a.key, "'" + value + "' is not a number", "a plain finite number", "");
  }
  return d;
}

int64_t PositiveInt(const Arg& a, const std::string& value, int64_t limit) {
  const double d = Number(a, value);
  if (d != std::floor(d) || d < 1 || d > static_cast<double>(limit)) {
    throw MakeConfigError(a.arg, a.key, "'" + value + "' is not an integer in 1.." + std::to_string(limit),
                          "a whole number in 1.." + std::to_string(limit), "");
  }
  return static_cast<int64_t>(d);
}

// The deployment settings of one point.
struct Knobs {
  std::optional<std::string> draft_model, draft_plan;
  std::optional<int64_t> k, chunk;
  std::optional<double> acceptance;
  std::string spec_args;  // the arguments that set speculative keys, for errors
  bool Speculative() const { return draft_model || draft_plan || k || acceptance; }
};

void Apply(Knobs& kn, const Arg& a, const std::string& value) {
  if (a.key == "prefill_chunk_tokens") {
    kn.chunk = PositiveInt(a, value, kMaxPromptTokens);
    return;
  }
  kn.spec_args += (kn.spec_args.empty() ? "" : ", ") + a.arg;
  if (a.key == "speculative.draft_model") kn.draft_model = value;
  else if (a.key == "speculative.draft_plan") kn.draft_plan = value;
  else if (a.key == "speculative.k") kn.k = PositiveInt(a, value, 64);
  else if (a.key == "speculative.acceptance") {
    const double v = Number(a, value);
    if (v < 0 || v > 1) {
      throw MakeConfigError(a.arg, a.key, "'" + value + "' is outside [0, 1]",
                            "the probability that the target accepts a drafted token", "");
    }
    kn.acceptance = v;
  }
}

// One deployment axis.
struct Axis {
  Arg a;
  std::vector<std::string> values;
};

Axis ParseAxis(const std::string& text) {
  Axis ax{SplitArg(text, "--sweep"), {}};
  const std::string& v = ax.a.value;
  size_t c1 = v.find(':');
  if (c1 != std::string::npos) {
    const size_t c2 = v.find(':', c1 + 1);
    if (c2 == std::string::npos || v.find(':', c2 + 1) != std::string::npos) {
      throw MakeConfigError(ax.a.arg, ax.a.key, "'" + v + "' is not a range", "start:stop:step or v1,v2,...", "");
    }
    const double a = Number(ax.a, Trim(v.substr(0, c1))), b = Number(ax.a, Trim(v.substr(c1 + 1, c2 - c1 - 1))),
                 s = Number(ax.a, Trim(v.substr(c2 + 1)));
    if (s == 0 || (b - a) / s < 0) {
      throw MakeConfigError(ax.a.arg, ax.a.key, "the range is empty or its step is zero",
                            "start:stop:step with (stop - start) / step >= 0", "");
    }
    const double n = std::floor((b - a) / s + 1e-9) + 1;
    if (n > static_cast<double>(kMaxDeployPoints)) {
      throw MakeConfigError(ax.a.arg, ax.a.key, fmt::format("{:.0f} values", n),
                            fmt::format("at most {} values", kMaxDeployPoints), "use a larger step");
    }
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) ax.values.push_back(whatif::FormatValue(a + i * s));
  } else {
    size_t start = 0;
    while (true) {
      const size_t p = v.find(',', start);
      const std::string t = Trim(v.substr(start, p == std::string::npos ? std::string::npos : p - start));
      if (t.empty()) throw MakeConfigError(ax.a.arg, ax.a.key, "empty value in the list", "v1,v2,...", "");
      ax.values.push_back(t);
      if (p == std::string::npos) break;
      start = p + 1;
    }
  }
  return ax;
}

struct PointResult {
  double tpot_s = 0, ttft_s = 0;
  std::optional<AdapterCost> adapters;
  std::optional<SpeculativeResult> spec;
  std::optional<ChunkedPrefill> chunked;
};

class Evaluator {
 public:
  PointResult Evaluate(const whatif::Setting& s, const Knobs& kn) {
    PointResult r;
    const ModelGraph dec = BuildModelGraph(s.arch, s.plan, s.decode);
    r.tpot_s = EvaluateStep(dec, s.device, s.context).total_s;
    if (!s.plan.adapters.empty()) r.adapters = EvaluateAdapterCost(dec, s.device, s.context);
    if (kn.chunk) {
      r.chunked = EvaluateChunkedPrefill(s.arch, s.plan, s.prefill, s.device, *kn.chunk, "--set prefill_chunk_tokens");
      r.ttft_s = r.chunked->ttft_s;
    } else {
      r.ttft_s = EvaluateStep(BuildModelGraph(s.arch, s.plan, s.prefill), s.device, 0).total_s;
    }
    if (kn.Speculative()) {
      for (const auto& [have, key] : {std::pair{kn.draft_model.has_value(), "speculative.draft_model"},
                                      std::pair{kn.draft_plan.has_value(), "speculative.draft_plan"},
                                      std::pair{kn.k.has_value(), "speculative.k"},
                                      std::pair{kn.acceptance.has_value(), "speculative.acceptance"}}) {
        if (!have) {
          throw MakeConfigError(kn.spec_args, key, "not given",
                                "speculative.draft_model, speculative.draft_plan, speculative.k and "
                                "speculative.acceptance together",
                                std::string("add --set ") + key + "=...");
        }
      }
      SpeculativeSpec spec;
      try {
        spec.draft = Draft(*kn.draft_model);
        spec.draft_plan = ResolveQuantPlan(*kn.draft_plan, spec.draft);
      } catch (const ConfigError& e) {
        throw ConfigError(kn.spec_args + ": " + e.what());
      }
      spec.k = *kn.k;
      spec.acceptance = *kn.acceptance;
      r.spec = EvaluateSpeculative(s.arch, s.plan, spec, s.decode, s.device, s.context);
    }
    return r;
  }

 private:
  const ModelArch& Draft(const std::string& name) {
    auto it = drafts_.find(name);
    if (it == drafts_.end()) it = drafts_.emplace(name, ResolveModelArch(name)).first;
    return it->second;
  }
  std::map<std::string, ModelArch> drafts_;
};

}  // namespace

const std::vector<std::string>& DeployKeys() {
  static const std::vector<std::string> k = {"speculative.draft_model", "speculative.draft_plan", "speculative.k",
                                             "speculative.acceptance", "prefill_chunk_tokens"};
  return k;
}

bool IsDeployArg(const std::string& text, const std::string& option) {
  const std::string key = Trim(text.substr(0, text.find('=')));
  if (std::find(DeployKeys().begin(), DeployKeys().end(), key) != DeployKeys().end()) return true;
  if (key.rfind("speculative.", 0) == 0) {
    const std::string guess = DidYouMean(key, DeployKeys());
    throw MakeConfigError(option + " " + text, key, "unknown speculative-decoding key",
                          "speculative.draft_model, speculative.draft_plan, speculative.k or speculative.acceptance",
                          guess.empty() ? "" : "did you mean '" + guess + "'?");
  }
  return false;
}

bool DeployActive(const whatif::Setting& base, const std::vector<std::string>& deploy_sets,
                  const std::vector<std::string>& deploy_sweeps) {
  return !base.plan.adapters.empty() || !deploy_sets.empty() || !deploy_sweeps.empty();
}

std::vector<reports::Table> DeployTables(const whatif::Scenario& scenario, const std::vector<std::string>& sets,
                                         const std::vector<std::string>& sweeps,
                                         const std::vector<std::string>& deploy_sets,
                                         const std::vector<std::string>& deploy_sweeps) {
  std::vector<whatif::Override> fixed;
  for (const auto& s : sets) fixed.push_back(whatif::ParseSetArg(s));
  std::vector<whatif::SweepAxis> axes;
  for (const auto& s : sweeps) axes.push_back(whatif::ParseSweepArg(s));
  Knobs base_knobs;
  for (const auto& s : deploy_sets) {
    const Arg a = SplitArg(s, "--set");
    Apply(base_knobs, a, a.value);
  }
  std::vector<Axis> daxes;
  for (const auto& s : deploy_sweeps) {
    daxes.push_back(ParseAxis(s));
    Knobs check;  // every value validated before any work
    for (const auto& v : daxes.back().values) Apply(check, daxes.back().a, v);
  }
  Evaluator ev;
  if (axes.empty() && daxes.empty()) {
    const whatif::Setting s = scenario.Resolve(fixed);
    const PointResult r = ev.Evaluate(s, base_knobs);
    reports::Table t;
    t.title = fmt::format("Deployment: {} on {}, plan {}, batch {}, context {}, prompt {}", s.arch.name,
                          s.device.name, s.plan.name, s.decode.batch, s.context, s.prompt);
    t.columns = {"metric", "value"};
    t.rows.push_back({"tps (decode, per sequence)", Cell(1.0 / r.tpot_s, 3)});
    if (r.adapters) {
      const AdapterCost& c = *r.adapters;
      t.rows.push_back({"adapters attached on linears", Cell::Int(c.attached_linears)});
      t.rows.push_back({"adapter weight_bytes per step", Cell(c.weight_bytes, 0)});
      t.rows.push_back({"adapter flops per step", Cell(c.flops, 0)});
      t.rows.push_back({"adapter act_bytes per step", Cell(c.act_bytes, 0)});
      t.rows.push_back({"adapter dispatches per step", Cell(c.dispatches, 0)});
      t.rows.push_back({"tps without adapters", Cell(1.0 / c.step_s_without, 3)});
      t.rows.push_back({"adapter_tps_cost_pct", Cell(c.tps_cost_pct, 3)});
      for (const auto& a : s.plan.adapters) {
        t.notes.push_back(fmt::format("adapter '{}': rank {}, {}, {}", a.pattern, a.rank, AdapterDtypeName(a.dtype),
                                      AdapterModeName(a.mode)));
      }
      t.notes.insert(t.notes.end(), c.notes.begin(), c.notes.end());
    }
    if (r.spec) {
      const SpeculativeResult& p = *r.spec;
      t.rows.push_back({"speculative tokens per target step (E)", Cell(p.tokens_per_step, 4)});
      t.rows.push_back({"speculative draft_s (k draft steps)", Cell(p.draft_s, 6)});
      t.rows.push_back({"speculative verify_s (k + 1 tokens)", Cell(p.verify_s, 6)});
      t.rows.push_back({"speculative tps (E / step)", Cell(p.tps, 3)});
      t.rows.push_back({"speculative speedup over the target alone", Cell(p.speedup, 4)});
      t.notes.push_back(fmt::format("speculative decoding: draft {} ({}), k {}, acceptance {}; E = (1 - a^(k+1)) / "
                                    "(1 - a) (Leviathan et al. 2023)",
                                    *base_knobs.draft_model, *base_knobs.draft_plan, *base_knobs.k,
                                    *base_knobs.acceptance));
    }
    if (r.chunked) {
      t.rows.push_back({"ttft_s chunked (sum over chunks)", Cell(r.chunked->ttft_s, 6)});
      t.rows.push_back({"ttft_s unchunked", Cell(r.chunked->ttft_unchunked_s, 6)});
      t.rows.push_back({"prefill chunks", Cell::Int(static_cast<long long>(r.chunked->chunk_s.size()))});
      t.notes.push_back(fmt::format("chunked prefill: {} tokens per chunk, each chunk attending to every earlier "
                                    "token and reading the weights again (Sarathi)",
                                    r.chunked->chunk_tokens));
    } else {
      t.rows.push_back({"ttft_s", Cell(r.ttft_s, 6)});
    }
    return {t};
  }

  // A grid over whatif axes and deployment axes, first axis slowest.
  uint64_t total = whatif::GridSize(axes);
  for (const auto& d : daxes) total = total > kMaxDeployPoints ? total : total * d.values.size();
  if (total > kMaxDeployPoints) {
    throw MakeConfigError("--sweep", fmt::format("{} points", total),
                          "too many points for a sweep with deployment keys or adapters (each point builds its graphs)",
                          fmt::format("at most {} points", kMaxDeployPoints), "narrow the axes");
  }
  const whatif::Setting first = scenario.Resolve(fixed);
  bool adapters = !first.plan.adapters.empty();
  for (const auto& a : axes) adapters = adapters || a.key.rfind("plan.adapters.", 0) == 0;
  bool spec = base_knobs.Speculative(), chunk = base_knobs.chunk.has_value();
  for (const auto& d : daxes) {
    spec = spec || d.a.key.rfind("speculative.", 0) == 0;
    chunk = chunk || d.a.key == "prefill_chunk_tokens";
  }
  reports::Table t;
  t.title = fmt::format("Sweep of {} points on {} / {} / {} with deployment columns", total, first.arch.name,
                        first.device.name, first.plan.name);
  for (const auto& a : axes) t.columns.push_back(a.key);
  for (const auto& d : daxes) t.columns.push_back(d.a.key);
  t.columns.insert(t.columns.end(), {"tps", "tpot_s", "ttft_s"});
  if (adapters) t.columns.insert(t.columns.end(), {"tps_without_adapters", "adapter_tps_cost_pct"});
  if (spec) t.columns.insert(t.columns.end(), {"spec_tokens_per_step", "spec_step_s", "spec_tps", "spec_speedup"});
  if (chunk) t.columns.push_back("ttft_unchunked_s");
  const size_t n_axes = axes.size() + daxes.size();
  std::vector<size_t> idx(n_axes, 0);
  std::map<std::vector<size_t>, whatif::Setting> settings;
  for (uint64_t p = 0; p < total; ++p) {
    std::vector<whatif::Override> ov = fixed;
    std::vector<size_t> wi(idx.begin(), idx.begin() + static_cast<long>(axes.size()));
    for (size_t i = 0; i < axes.size(); ++i) {
      ov.push_back({axes[i].key, axes[i].values[idx[i]], axes[i].arg});
    }
    auto it = settings.find(wi);
    if (it == settings.end()) it = settings.emplace(wi, scenario.Resolve(ov)).first;
    Knobs kn = base_knobs;
    for (size_t i = 0; i < daxes.size(); ++i) Apply(kn, daxes[i].a, daxes[i].values[idx[axes.size() + i]]);
    const PointResult r = ev.Evaluate(it->second, kn);
    std::vector<Cell> row;
    for (size_t i = 0; i < axes.size(); ++i) row.push_back(axes[i].values[idx[i]]);
    for (size_t i = 0; i < daxes.size(); ++i) row.push_back(daxes[i].values[idx[axes.size() + i]]);
    row.insert(row.end(), {Cell(1.0 / r.tpot_s, 4), Cell(r.tpot_s, 7), Cell(r.ttft_s, 7)});
    if (adapters) {
      if (r.adapters) {
        row.insert(row.end(), {Cell(1.0 / r.adapters->step_s_without, 4), Cell(r.adapters->tps_cost_pct, 4)});
        for (const auto& note : r.adapters->notes) {
          if (std::find(t.notes.begin(), t.notes.end(), note) == t.notes.end()) t.notes.push_back(note);
        }
      } else {
        row.insert(row.end(), {Cell(1.0 / r.tpot_s, 4), Cell(0.0, 4)});
      }
    }
    if (spec) {
      if (r.spec) {
        row.insert(row.end(), {Cell(r.spec->tokens_per_step, 4), Cell(r.spec->step_s, 7), Cell(r.spec->tps, 4),
                               Cell(r.spec->speedup, 4)});
      } else {
        row.insert(row.end(), {Cell(), Cell(), Cell(), Cell()});
      }
    }
    if (chunk) row.push_back(r.chunked ? Cell(r.chunked->ttft_unchunked_s, 7) : Cell());
    t.rows.push_back(std::move(row));
    for (size_t i = n_axes; i-- > 0;) {
      const size_t size = i < axes.size() ? axes[i].values.size() : daxes[i - axes.size()].values.size();
      if (++idx[i] < size) break;
      idx[i] = 0;
    }
  }
  if (spec) t.notes.push_back("spec_*: speculative decoding, E = (1 - a^(k+1)) / (1 - a) tokens per target step "
                              "(Leviathan et al. 2023); step = k draft decode steps + the target verifying k + 1 tokens");
  if (chunk) t.notes.push_back("ttft_s: chunked prefill, the sum over chunks (Sarathi); ttft_unchunked_s: one step");
  if (adapters) t.notes.push_back("adapter_tps_cost_pct = 100 (1 - TPOT without adapters / TPOT with them)");
  return {t};
}

}  // namespace lifeline::cli
