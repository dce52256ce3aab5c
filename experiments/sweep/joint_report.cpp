#include "experiments/sweep/joint_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "common/atomic_file.hpp"
#include "reports/plot.hpp"
#include "reports/table.hpp"
#include "experiments/paper/paper.hpp"
#include "experiments/sweep/deployed_tps.hpp"
#include "experiments/sweep/methods_table.hpp"

namespace lifeline::sweep {

namespace fs = std::filesystem;
using nlohmann::json;
using reports::Cell;
using reports::Table;

namespace {

std::string Stem(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  return out;
}

std::string JsonText(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Throughput results of one (model, fidelity, fusion, batch).
struct Group {
  std::string model, fidelity, fusion;
  int64_t batch = 1;
  std::set<std::string> devices;
  std::set<std::string> plans;
  std::set<int64_t> contexts;
  // (plan, context, device) -> TPS, or the status text when not done.
  std::map<std::tuple<std::string, int64_t, std::string>, std::variant<double, std::string>> tps;
};

std::optional<double> Tps(const Group& g, const std::string& plan, int64_t ctx, const std::string& dev) {
  auto it = g.tps.find({plan, ctx, dev});
  if (it == g.tps.end() || !std::holds_alternative<double>(it->second)) return std::nullopt;
  return std::get<double>(it->second);
}

std::optional<double> Ar(const CellRow& r, const std::string& metric) {
  const json& m = r.outputs.at("metrics");
  if (!m.contains(metric) || !m[metric].contains("ar_pct") || m[metric]["ar_pct"].is_null()) return std::nullopt;
  return m[metric]["ar_pct"].get<double>();
}

std::optional<double> Metric(const CellRow& r, const std::string& metric, const std::string& which) {
  const json& m = r.outputs.at("metrics");
  if (!m.contains(metric) || !m[metric].contains(which) || m[metric][which].is_null()) return std::nullopt;
  return m[metric][which].get<double>();
}

// A deployed variant's metric (recovery.json `deploy`, recovery/README.md).
std::optional<double> Deployed(const CellRow& r, const std::string& variant, const std::string& which) {
  if (!r.outputs.contains("deploy")) return std::nullopt;
  const json& v = r.outputs["deploy"]["variants"];
  if (!v.contains(variant) || !v[variant]["metrics"].contains("perplexity")) return std::nullopt;
  const json& m = v[variant]["metrics"]["perplexity"];
  if (!m.contains(which) || m[which].is_null()) return std::nullopt;
  return m[which].get<double>();
}

// True when the cell's deployment plan is `plan` (its name or its file).
bool DeployedOn(const CellRow& r, const std::string& plan) {
  if (!r.outputs.contains("deploy")) return false;
  const json& d = r.outputs["deploy"];
  return d.value("plan", std::string()) == plan || d.value("plan_source", std::string()) == plan;
}

std::string Label(const CellRow& r, const std::string& key, const std::string& fallback) {
  return r.labels.is_object() && r.labels.contains(key) ? r.labels[key].get<std::string>() : fallback;
}

// A cell's identity without the digests of its input files.
std::string LogicalKey(const CellRow& r) {
  json in = r.inputs;
  if (in.is_object()) in.erase("input_sha256");
  return CellKindName(r.kind) + "|" + in.dump();
}

// The newest cell of each logical key, in the order of `rows`; counts the rest.
std::vector<const CellRow*> Newest(const std::vector<CellRow>& rows, int* superseded) {
  std::map<std::string, const CellRow*> newest;
  for (const auto& r : rows) {
    const CellRow*& n = newest[LogicalKey(r)];
    if (!n || r.created_at > n->created_at || (r.created_at == n->created_at && r.id > n->id)) n = &r;
  }
  std::vector<const CellRow*> out;
  for (const auto& r : rows) {
    if (newest.at(LogicalKey(r)) == &r) out.push_back(&r);
  }
  *superseded = static_cast<int>(rows.size() - out.size());
  return out;
}

// The (plan, device, context) of a throughput or measured row.
struct ThroughputKey {
  std::string plan, device;
  int64_t context = 0;
};
std::optional<ThroughputKey> KeyOf(const CellRow& r) {
  if (r.kind == CellKind::kThroughput) {
    return ThroughputKey{r.inputs.at("plan").get<std::string>(), r.inputs.at("device").get<std::string>(),
                         r.inputs.at("context").get<int64_t>()};
  }
  if (r.kind == CellKind::kMeasured) {
    return ThroughputKey{r.inputs.at("plan").get<std::string>(),
                         "measured: " + r.inputs.value("machine", std::string("this machine")),
                         r.inputs.at("context_tokens").get<int64_t>()};
  }
  return std::nullopt;
}

template <typename T>
std::string List(const std::set<T>& s) {
  if (s.empty()) return "none: the store has no throughput cells";
  return fmt::format("{}", fmt::join(s, ", "));
}

}  // namespace

void CheckJointReportOptions(const std::vector<CellRow>& rows, const JointReportOptions& o,
                             const std::set<std::string>& given) {
  std::set<std::string> plans, devices;
  std::set<int64_t> contexts;
  for (const auto& r : rows) {
    if (const auto k = KeyOf(r)) {
      plans.insert(k->plan);
      devices.insert(k->device);
      contexts.insert(k->context);
    }
  }
  auto check = [&](const char* flag, const std::string& value, const std::set<std::string>& valid,
                   const char* what) {
    if (!given.count(flag) || valid.count(value)) return;
    const std::string guess = DidYouMean(value, std::vector<std::string>(valid.begin(), valid.end()));
    throw MakeConfigError("command line", flag, "'" + value + "' is no " + what + " of the store's throughput cells",
                          std::string("one of: ") + List(valid), guess.empty() ? "" : "did you mean '" + guess + "'?");
  };
  check("--baseline", o.baseline, plans, "plan");
  check("--ceiling", o.ceiling, plans, "plan");
  check("--pareto-device", o.pareto_device, devices, "device");
  if (o.pareto_context <= 0 || (given.count("--pareto-context") && !contexts.count(o.pareto_context))) {
    throw MakeConfigError("command line", "--pareto-context",
                          fmt::format("{} is {}", o.pareto_context,
                                      o.pareto_context <= 0 ? "not a positive number of tokens"
                                                            : "no context of the store's throughput cells"),
                          "one of: " + List(contexts));
  }
}

JointReport BuildJointReport(const std::vector<CellRow>& all_rows, const JointReportOptions& o) {
  JointReport rep;
  const std::vector<const CellRow*> newest = Newest(all_rows, &rep.superseded);
  std::map<std::tuple<std::string, std::string, std::string, int64_t>, Group> groups;
  std::vector<const CellRow*> recovery;
  for (const CellRow* rp : newest) {
    const CellRow& r = *rp;
    ++rep.cells;
    switch (r.status) {
      case CellStatus::kDone: ++rep.done; break;
      case CellStatus::kFailed: ++rep.failed; break;
      case CellStatus::kInfeasible: ++rep.infeasible; break;
      default: ++rep.unfinished; break;
    }
    if (r.kind == CellKind::kRecovery) {
      if (r.status == CellStatus::kDone && r.outputs.is_object() && r.outputs.contains("metrics")) {
        recovery.push_back(&r);
      }
      continue;
    }
    json in = r.inputs;
    bool tps_key_is_median = false;
    if (r.kind == CellKind::kMeasured) {
      // A llama.cpp decode (`lifeline measure`/`validate`): shown as a device
      // column "measured: <machine>" beside the forecasts of the same model,
      // plan and context made with the fidelity and fusion the measurement's
      // forecast uses (exact; unfused unless flash attention was on).
      in = {{"model", r.inputs.at("model")},
            {"fidelity", "exact"},
            {"fusion", r.inputs.value("flash_attn", false) ? "paper" : "none"},
            {"batch", 1},
            {"device", "measured: " + r.inputs.value("machine", std::string("this machine"))},
            {"plan", r.inputs.at("plan")},
            {"context", r.inputs.at("context_tokens")}};
      tps_key_is_median = true;
    }
    Group& g = groups[{in["model"].get<std::string>(), in["fidelity"].get<std::string>(),
                       in["fusion"].get<std::string>(), in["batch"].get<int64_t>()}];
    g.model = in["model"].get<std::string>();
    g.fidelity = in["fidelity"].get<std::string>();
    g.fusion = in["fusion"].get<std::string>();
    g.batch = in["batch"].get<int64_t>();
    const std::string dev = in["device"].get<std::string>(), plan = in["plan"].get<std::string>();
    const int64_t ctx = in["context"].get<int64_t>();
    g.devices.insert(dev);
    g.plans.insert(plan);
    g.contexts.insert(ctx);
    if (r.status == CellStatus::kDone) {
      g.tps[{plan, ctx, dev}] = r.outputs.at(tps_key_is_median ? "tps_median" : "tps").get<double>();
    } else {
      g.tps[{plan, ctx, dev}] = CellStatusName(r.status);
    }
  }

  // Best recovery cell (highest perplexity AR%) per plan label.
  std::map<std::string, const CellRow*> best;
  for (const CellRow* r : recovery) {
    const std::string plan = Label(*r, "plan", "");
    if (plan.empty()) continue;
    const double ar = Ar(*r, "perplexity").value_or(-std::numeric_limits<double>::infinity());
    auto it = best.find(plan);
    if (it == best.end() || ar > Ar(*it->second, "perplexity").value_or(-std::numeric_limits<double>::infinity())) {
      best[plan] = r;
    }
  }
  std::set<std::string> ar_metrics;
  for (const CellRow* r : recovery) {
    for (const auto& [k, v] : r->outputs.at("metrics").items()) ar_metrics.insert(k);
  }
  ar_metrics.erase("perplexity");
  const bool any_deploy =
      std::any_of(recovery.begin(), recovery.end(), [](const CellRow* r) { return r->outputs.contains("deploy"); });
  // Per plan: the recovery cell deployed on it with the highest attached perplexity AR%.
  std::map<std::string, const CellRow*> deployed_best;
  for (const CellRow* r : recovery) {
    if (!r->outputs.contains("deploy")) continue;
    for (const std::string& key : {r->outputs["deploy"].value("plan", std::string()),
                                   r->outputs["deploy"].value("plan_source", std::string())}) {
      const double ar = Deployed(*r, "attached", "ar_pct").value_or(-std::numeric_limits<double>::infinity());
      auto it = deployed_best.find(key);
      if (it == deployed_best.end() ||
          ar > Deployed(*it->second, "attached", "ar_pct").value_or(-std::numeric_limits<double>::infinity()))
        deployed_best[key] = r;
    }
  }

  DeployedForecaster forecaster;
  std::set<std::string> all_devices;
  for (const auto& [key, g] : groups) all_devices.insert(g.devices.begin(), g.devices.end());
  rep.pareto_device = o.pareto_device.empty() ? (all_devices.empty() ? "" : *all_devices.begin()) : o.pareto_device;
  rep.pareto_context = o.pareto_context;

  for (const auto& [key, g] : groups) {
    Table t;
    const bool defaults = g.fidelity == "paper" && g.fusion == "paper" && g.batch == 1;
    t.title = fmt::format("{}: decode TPS, Gain% and Capture% (vs {} / {}), fidelity {}, fusion {}, batch {}, and "
                          "accuracy recovered",
                          g.model, o.baseline, o.ceiling, g.fidelity, g.fusion, g.batch);
    t.columns = {"plan", "context_tokens"};
    t.headers = {"Plan", "Context"};
    for (const auto& d : g.devices) {
      t.columns.insert(t.columns.end(), {"tps_" + d, "gain_pct_" + d, "capture_pct_" + d});
      t.headers.insert(t.headers.end(), {"TPS " + d, "Gain% " + d, "Capture% " + d});
    }
    const bool any_rec = std::any_of(g.plans.begin(), g.plans.end(), [&](const std::string& p) { return best.count(p); });
    if (any_rec) {
      t.columns.insert(t.columns.end(), {"recovery_model", "recovery_cell", "ppl_teacher", "ppl_quantized",
                                         "ppl_recovered", "ppl_ar_pct"});
      t.headers.insert(t.headers.end(), {"Recovered on", "Cell", "PPL teacher", "PPL quant", "PPL recov", "AR% PPL"});
      for (const auto& m : ar_metrics) {
        t.columns.push_back(m + "_ar_pct");
        t.headers.push_back("AR% " + m);
      }
    }
    const bool any_dep = std::any_of(g.plans.begin(), g.plans.end(), [&](const std::string& p) {
      return deployed_best.count(p) && DeployedOn(*deployed_best.at(p), p);
    });
    if (any_dep) {
      t.columns.insert(t.columns.end(), {"deployed_cell", "deployed_attached_ppl_ar_pct", "deployed_merged_ppl_ar_pct"});
      t.headers.insert(t.headers.end(), {"Deployed cell", "AR% PPL attached", "AR% PPL merged"});
    }
    // The recovered model as deployed: the best recovery cell's adapters
    // (its rank and targets) attached to the row's setting.
    if (any_rec) {
      t.columns.insert(t.columns.end(), {"lora_rank", "lora_targets"});
      t.headers.insert(t.headers.end(), {"LoRA rank", "LoRA targets"});
      for (const auto& d : g.devices) {
        t.columns.insert(t.columns.end(), {"tps_deployed_" + d, "adapter_tps_cost_pct_" + d});
        t.headers.insert(t.headers.end(), {"TPS deployed " + d, "Adapter cost% " + d});
      }
    }
    std::set<std::string> deployed_why;  // why a deployed TPS is left empty
    // Plans: baseline, ceiling, then the rest by name.
    std::vector<std::string> plans;
    for (const auto& p : {o.baseline, o.ceiling}) {
      if (g.plans.count(p) && std::find(plans.begin(), plans.end(), p) == plans.end()) plans.push_back(p);
    }
    bool capture_undefined = false;  // TPS(ceiling) == TPS(baseline) somewhere
    for (const auto& p : g.plans) {
      if (p != o.baseline && p != o.ceiling) plans.push_back(p);
    }
    for (int64_t ctx : g.contexts) {
      for (const auto& p : plans) {
        std::vector<Cell> row = {p, Cell::Int(ctx)};
        for (const auto& d : g.devices) {
          auto it = g.tps.find({p, ctx, d});
          if (it == g.tps.end()) {
            row.insert(row.end(), {Cell(), Cell(), Cell()});
            continue;
          }
          if (!std::holds_alternative<double>(it->second)) {
            row.insert(row.end(), {Cell(std::get<std::string>(it->second)), Cell(), Cell()});
            continue;
          }
          const double tps = std::get<double>(it->second);
          const auto base = Tps(g, o.baseline, ctx, d), ceil = Tps(g, o.ceiling, ctx, d);
          row.push_back(Cell(tps, 6));
          row.push_back(base ? Cell(GainPct(*base, tps), 6) : Cell());
          if (base && ceil && *ceil == *base) capture_undefined = true;
          row.push_back(base && ceil && *ceil != *base ? Cell(CapturePct(*base, *ceil, tps), 6) : Cell());
        }
        if (any_rec) {
          auto b = best.find(p);
          if (b == best.end()) {
            row.resize(t.columns.size());
          } else {
            const CellRow& r = *b->second;
            row.push_back(Label(r, "model", "?"));
            row.push_back(r.id);
            row.push_back(Cell::Opt(Metric(r, "perplexity", "teacher"), 4));
            row.push_back(Cell::Opt(Metric(r, "perplexity", "quantized"), 4));
            row.push_back(Cell::Opt(Metric(r, "perplexity", "recovered"), 4));
            row.push_back(Cell::Opt(Ar(r, "perplexity"), 2));
            for (const auto& m : ar_metrics) row.push_back(Cell::Opt(Ar(r, m), 2));
          }
        }
        if (any_dep) {
          auto d = deployed_best.find(p);
          if (d == deployed_best.end()) {
            row.insert(row.end(), {Cell(), Cell(), Cell()});
          } else {
            row.push_back(d->second->id);
            row.push_back(Cell::Opt(Deployed(*d->second, "attached", "ar_pct"), 2));
            row.push_back(Cell::Opt(Deployed(*d->second, "merged", "ar_pct"), 2));
          }
        }
        if (any_rec) {
          auto b = best.find(p);
          std::string why;
          const std::optional<RecoveryAdapters> ad =
              b == best.end() ? std::nullopt : AdaptersOfRecovery(*b->second, &why);
          if (b != best.end() && !ad) deployed_why.insert(fmt::format("cell {}: {}", b->second->id, why));
          row.push_back(ad ? Cell::Int(ad->rank) : Cell());
          row.push_back(ad ? Cell(fmt::format("{}", fmt::join(ad->targets, " "))) : Cell());
          for (const auto& d : g.devices) {
            const auto tps = Tps(g, p, ctx, d);
            std::optional<DeployedForecast> f;
            if (ad && tps && !d.starts_with("measured: ")) {
              const json setting = {{"model", g.model}, {"device", d},           {"plan", p},      {"context", ctx},
                                    {"fidelity", g.fidelity}, {"fusion", g.fusion}, {"batch", g.batch}};
              f = forecaster.Forecast(setting, *ad, *tps, &why);
              if (!f) deployed_why.insert(fmt::format("{} on {}: {}", p, d, why));
            }
            row.push_back(f ? Cell(f->tps, 6) : Cell());
            row.push_back(f ? Cell(f->cost_pct, 3) : Cell());
          }
        }
        t.rows.push_back(std::move(row));
      }
    }
    if (any_rec) {
      t.notes.push_back("tps_deployed: the row's setting with the recovery cell's LoRA adapters attached (its rank, "
                        "BF16, on the linears its lora_targets name), forecast by the roofline; adapter_tps_cost_pct = "
                        "100 (1 - TPOT without / TPOT with). The adapters are trained on the recovery model; their "
                        "shape here is the row's model's.");
      for (const auto& w : deployed_why) t.notes.push_back("no deployed TPS for " + w);
    }
    t.notes.push_back(fmt::format("Gain% = TPS / TPS({0}) - 1; Capture% = (TPS - TPS({0})) / (TPS({1}) - TPS({0})); "
                                  "cells that did not finish show their status.",
                                  o.baseline, o.ceiling));
    if (capture_undefined) {
      t.notes.push_back(o.baseline == o.ceiling
                            ? fmt::format("Capture% is undefined (empty): the baseline and the ceiling are the same "
                                          "plan ({}), so TPS(ceiling) - TPS(baseline) is 0; pass a different --ceiling.",
                                          o.baseline)
                            : fmt::format("Capture% is undefined (empty) where TPS({}) equals TPS({}): the ceiling "
                                          "gains nothing over the baseline there (0/0).",
                                          o.ceiling, o.baseline));
    }
    if (any_dep) {
      t.notes.push_back("Deployed columns: the recovery cell whose --deploy-plan is the row's plan (highest attached "
                        "perplexity AR%), evaluated with every linear stored per that plan, adapters attached or "
                        "merged and re-quantized (recovery.json deploy).");
    }
    if (any_rec) {
      t.notes.push_back("Recovery columns: the recovery cell with the highest perplexity AR% among those whose "
                        "report plan label is the row's plan (see recovery.* for every cell); AR% is empty when "
                        "the quantized model was not worse.");
    }
    rep.tables.emplace_back(defaults ? "model_" + Stem(g.model)
                                     : fmt::format("model_{}_{}_{}_b{}", Stem(g.model), g.fidelity, g.fusion, g.batch),
                            std::move(t));
  }

  // Every recovery cell.
  if (!recovery.empty()) {
    std::map<std::string, std::set<std::string>> values;
    for (const CellRow* r : recovery) {
      for (const auto& [k, v] : r->inputs.at("recipe").items()) values[k].insert(v.dump());
    }
    std::vector<std::string> varying;
    for (const auto& [k, vs] : values) {
      bool everywhere = true;
      for (const CellRow* r : recovery) everywhere = everywhere && r->inputs.at("recipe").contains(k);
      if ((vs.size() > 1 || !everywhere) && k != "method" && k != "degrade") varying.push_back(k);
    }
    Table t;
    t.title = "Recovery cells: teacher / quantized / recovered and AR% per metric";
    t.columns = {"cell", "model", "plan", "method", "degrade"};
    t.columns.insert(t.columns.end(), varying.begin(), varying.end());
    std::vector<std::string> metrics = {"perplexity"};
    metrics.insert(metrics.end(), ar_metrics.begin(), ar_metrics.end());
    for (const auto& m : metrics) {
      for (const char* w : {"teacher", "quantized", "recovered", "ar_pct"}) t.columns.push_back(m + "_" + w);
    }
    t.columns.push_back("trainable_params");
    t.columns.push_back("train_tokens");
    if (any_deploy) {
      for (const char* c : {"deploy_plan", "deploy_attached_ppl", "deploy_attached_ppl_ar_pct", "deploy_merged_ppl",
                            "deploy_merged_ppl_ar_pct"})
        t.columns.push_back(c);
    }
    t.columns.push_back("seconds");
    for (const CellRow* r : recovery) {
      std::vector<Cell> row = {r->id, Label(*r, "model", ""), Label(*r, "plan", "")};
      // Method and degradation as the run recorded them (empty for cells run before they were recorded).
      const json& outs = r->outputs.is_object() ? r->outputs : json::object();
      const json& rrc = outs.contains("recipe") ? outs["recipe"] : json::object();
      row.push_back(outs.contains("method") ? Cell(outs["method"].get<std::string>()) : Cell());
      row.push_back(rrc.contains("degrade") ? Cell(JsonText(rrc["degrade"])) : Cell());
      for (const auto& k : varying) {
        const json& rc = r->inputs.at("recipe");
        row.push_back(rc.contains(k) ? Cell(JsonText(rc[k])) : Cell());
      }
      for (const auto& m : metrics) {
        row.push_back(Cell::Opt(Metric(*r, m, "teacher"), 4));
        row.push_back(Cell::Opt(Metric(*r, m, "quantized"), 4));
        row.push_back(Cell::Opt(Metric(*r, m, "recovered"), 4));
        row.push_back(Cell::Opt(Ar(*r, m), 2));
      }
      for (const char* k : {"trainable_params", "train_tokens"})
        row.push_back(outs.contains(k) && outs[k].is_number() ? Cell(outs[k].get<double>(), 0) : Cell());
      if (any_deploy) {
        const bool has = r->outputs.contains("deploy");
        row.push_back(has ? Cell(r->outputs["deploy"].value("plan", std::string())) : Cell());
        for (const char* v : {"attached", "merged"}) {
          row.push_back(Cell::Opt(Deployed(*r, v, "recovered"), 4));
          row.push_back(Cell::Opt(Deployed(*r, v, "ar_pct"), 2));
        }
      }
      const json& tm = r->outputs.value("timings", json::object());
      row.push_back(tm.contains("total_s") ? Cell(tm["total_s"].get<double>(), 1) : Cell(r->elapsed_s, 1));
      t.rows.push_back(std::move(row));
    }
    t.notes.push_back("Only the recipe keys that differ between cells are shown; every cell's full recipe is in the "
                      "store (outputs.recipe).");
    rep.tables.emplace_back("recovery", std::move(t));
    if (auto methods = MethodsTable(recovery)) rep.tables.emplace_back("methods", std::move(*methods));
  }

  // Pareto points: per throughput model, the gain of each recovery cell's plan.
  Table& p = rep.pareto;
  p.title = fmt::format("Throughput gain vs accuracy recovered ({} at {} tokens; gain vs {})", rep.pareto_device,
                        rep.pareto_context, o.baseline);
  p.columns = {"model", "plan", "recovery_cell", "recovery_model", "gain_pct", "ppl_ar_pct", "on_front"};
  for (const auto& [key, g] : groups) {
    if (!(g.fidelity == "paper" && g.fusion == "paper" && g.batch == 1)) continue;
    struct Pt {
      std::string plan, cell, rmodel;
      double x, y;
    };
    std::vector<Pt> pts;
    for (const CellRow* r : recovery) {
      const std::string plan = Label(*r, "plan", "");
      const auto tps = Tps(g, plan, rep.pareto_context, rep.pareto_device);
      const auto base = Tps(g, o.baseline, rep.pareto_context, rep.pareto_device);
      const auto ar = Ar(*r, "perplexity");
      if (!tps || !base || !ar) continue;
      pts.push_back({plan, r->id, Label(*r, "model", ""), GainPct(*base, *tps), *ar});
    }
    for (const auto& a : pts) {
      bool dominated = false;
      for (const auto& b : pts) {
        dominated = dominated || (b.x >= a.x && b.y >= a.y && (b.x > a.x || b.y > a.y));
      }
      p.rows.push_back({g.model, a.plan, a.cell, a.rmodel, Cell(a.x, 4), Cell(a.y, 2), dominated ? "no" : "yes"});
    }
  }
  return rep;
}

std::vector<fs::path> WriteJointReport(const JointReport& r, const fs::path& out) {
  CreateOutputDirectory(out, "--out");
  std::vector<fs::path> written;
  auto add = [&](const std::vector<fs::path>& w) { written.insert(written.end(), w.begin(), w.end()); };
  for (const auto& [stem, t] : r.tables) add(reports::WriteTable(t, out, stem));
  auto summary_head = [&] {
    std::string tables;
    for (const auto& [stem, t] : r.tables) tables += (tables.empty() ? "" : ", ") + stem;
    return fmt::format("# lifeline report\n\n{} cells: {} done, {} infeasible, {} failed, {} not finished.\n\n"
                       "Tables: {}.\n\n",
                       r.cells, r.done, r.infeasible, r.failed, r.unfinished, tables.empty() ? "none" : tables);
  };
  if (r.pareto_device.empty()) {
    // No throughput cell: there is no gain to plot accuracy against.
    reports::WriteFileAtomic(out / "summary.md",
                             summary_head() + "No Pareto plot: the store has no throughput cells (a matrix with a "
                                              "`throughput:` section gives the TPS gains to plot AR% against).\n");
    written.push_back(out / "summary.md");
    return written;
  }
  add(reports::WriteTable(r.pareto, out, "pareto"));

  // The Pareto figure: one group per throughput model.
  reports::ParetoChart chart;
  chart.title = fmt::format("Throughput gain vs accuracy recovered ({}, {} tokens)", r.pareto_device, r.pareto_context);
  chart.xlabel = "decode TPS gain vs baseline (%)";
  chart.ylabel = "perplexity AR% (gap recovered)";
  chart.x_column = "gain_pct";
  chart.y_column = "ppl_ar_pct";
  chart.label_column = "plan";
  chart.id_column = "cell";
  chart.group_kind = "model";
  chart.empty_note = "no recovery cell joins a throughput cell yet";
  for (const auto& row : r.pareto.rows) {
    const std::string m = row[0].Text();
    auto g = std::find_if(chart.groups.begin(), chart.groups.end(), [&](const auto& x) { return x.name == m; });
    if (g == chart.groups.end()) g = chart.groups.insert(chart.groups.end(), reports::ParetoGroup{m, {}});
    g->points.push_back({std::get<double>(row[4].value), std::get<double>(row[5].value), row[1].Text(),
                         row[2].Text(), row[6].Text() == "yes"});
  }
  written.push_back(out / "pareto.dat");
  written.push_back(out / "pareto_front.dat");
  written.push_back(out / "pareto.gp");
  std::string plot_note;
  try {
    reports::WriteParetoChart(chart, out, "pareto");
    written.push_back(out / "pareto.png");
    written.push_back(out / "pareto.svg");
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    plot_note = fmt::format("{}; pareto.gp is beside the data.", e.what());
    std::fprintf(stderr, "report: %s\n", plot_note.c_str());
  }
  std::string summary =
      summary_head() + fmt::format("Pareto plot: pareto.png / pareto.svg ({} points; gains at {} tokens on {}).\n{}",
                                   r.pareto.rows.size(), r.pareto_context, r.pareto_device, plot_note);
  reports::WriteFileAtomic(out / "summary.md", summary);
  written.push_back(out / "summary.md");
  return written;
}

}  // namespace lifeline::sweep
