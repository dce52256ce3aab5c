// `lifeline explain`: per-operator breakdown of one setting.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <memory>

#include "experiments/commands.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/whatif/deploy.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline::cli {
namespace {

struct ExplainOptions {
  std::string model = "qwen3-4b";
  std::string device = "device_a";
  std::string plan = "w4w2-gateup";
  std::string fusion = "paper";
  std::string fidelity = "exact";
  std::string phase = "decode";
  int64_t context = 4096;
  int64_t prompt = 1024;
  int64_t batch = 1;
  bool per_layer = false;
  bool allow_infeasible = false;
  std::string format = "table";
  std::string out;
};

using whatif::LayerPattern;  // "layers.12.mlp.gate_proj" -> "layers.*.mlp.gate_proj"

void RunExplain(const ExplainOptions& o) {
  const ModelArch arch = ResolveModelArch(o.model);
  const DeviceSpec dev = ResolveDeviceSpec(o.device);
  const QuantPlan plan = ResolveQuantPlan(o.plan, arch);
  BuildOptions b;
  b.fusion = ParseFusionMode(o.fusion);
  b.fidelity = ParseFidelity(o.fidelity);
  b.batch = o.batch;
  if (o.phase == "prefill") {
    b.phase = Phase::kPrefill;
    b.prompt_tokens = o.prompt;
  } else if (o.phase != "decode") {
    throw MakeConfigError("--phase", "phase", "unknown phase '" + o.phase + "'", "decode or prefill", "");
  }
  CheckRunValue(o.context, kMaxContextTokens, "--context", "context", "tokens");
  // Unknown config.json keys, a context beyond the model's: one line each.
  const std::vector<std::string> warnings =
      ModelWarnings(arch, b.phase == Phase::kPrefill ? o.prompt : o.context);
  for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
  const ModelGraph g = BuildModelGraph(arch, plan, b);
  const StepResult r = EvaluateStep(g, dev, o.context);
  const Footprint fp = ComputeFootprint(g, o.context);
  const bool fits = FitsDevice(fp, dev);
  if (!fits && !o.allow_infeasible) {
    throw InfeasibleError(fmt::format("{} with plan {}, {} batch {}: {}; --allow-infeasible prints the breakdown "
                                      "anyway", arch.name, plan.name, o.phase, o.batch, DescribeFootprint(fp, dev)));
  }

  struct Agg {
    std::string name, kind, format;
    int count = 0;
    OpTiming t;
    int compute_bound = 0;
  };
  std::vector<Agg> rows;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < g.order.size(); ++i) {
    const OpNode& n = g.graph[g.order[i]];
    const std::string key = o.per_layer ? n.name : LayerPattern(n.name);
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = rows.size();
      rows.push_back(Agg{key, OpKindName(n.kind), n.format});
      it = index.find(key);
    }
    Agg& a = rows[it->second];
    const OpTiming& t = r.ops[i];
    ++a.count;
    a.t.flops += t.flops;
    a.t.weight_bytes += t.weight_bytes;
    a.t.act_bytes += t.act_bytes;
    a.t.kv_bytes += t.kv_bytes;
    a.t.compute_s += t.compute_s;
    a.t.memory_s += t.memory_s;
    a.t.overhead_s += t.overhead_s;
    a.t.total_s += t.total_s;
    a.compute_bound += t.compute_bound ? 1 : 0;
  }
  reports::Table t;
  const bool decode = b.phase == Phase::kDecode;
  t.title = fmt::format("{} on {}, plan {}, fusion {}, fidelity {}, {} batch {}{}", arch.name, dev.name, plan.name,
                        o.fusion, o.fidelity, o.phase, o.batch,
                        decode ? fmt::format(", context {} tokens", o.context)
                               : fmt::format(", prompt {} tokens", o.prompt));
  t.columns = {"op", "kind", "count", "format", "flops", "weight_bytes", "act_bytes", "kv_bytes",
               "compute_s", "memory_s", "overhead_s", "time_s", "bound", "share_pct"};
  double total = 0;
  for (const auto& a : rows) total += a.t.total_s;
  for (const auto& a : rows) {
    const std::string bound = a.compute_bound == 0 ? "memory" : a.compute_bound == a.count ? "compute" : "mixed";
    t.rows.push_back({a.name, a.kind, reports::Cell::Int(a.count), a.format, reports::Cell(a.t.flops, 0),
                      reports::Cell(a.t.weight_bytes, 0), reports::Cell(a.t.act_bytes, 0),
                      reports::Cell(a.t.kv_bytes, 0), reports::Cell(a.t.compute_s, 9),
                      reports::Cell(a.t.memory_s, 9), reports::Cell(a.t.overhead_s, 9),
                      reports::Cell(a.t.total_s, 9), bound, reports::Cell(100.0 * a.t.total_s / total, 2)});
  }
  if (decode) {
    const DecodeMetrics m = DecodeFromStep(r.total_s, o.batch);
    t.notes.push_back(fmt::format("TPOT {:.6f} s, decode {:.3f} tokens/s per sequence ({:.3f} over the batch); "
                                  "sum of compute {:.6f} s, memory {:.6f} s, overhead {:.6f} s",
                                  m.tpot_s, m.tps, m.batch_tokens_per_s, r.compute_s, r.memory_s, r.overhead_s));
  } else {
    t.notes.push_back(fmt::format("TTFT {:.6f} s = max(compute {:.6f} s, memory {:.6f} s) + overhead {:.6f} s",
                                  r.total_s, r.compute_s, r.memory_s, r.overhead_s));
  }
  t.notes.push_back(fmt::format("memory footprint {:.0f} bytes: weights {:.0f} + KV cache {:.0f} ({:.0f} per token, "
                                "{} tokens x batch {}) + activation workspace {:.0f}; {}",
                                fp.total_bytes, fp.weight_bytes, fp.kv_cache_bytes, fp.kv_cache_bytes_per_token,
                                fp.cached_tokens, fp.batch, fp.activation_workspace_bytes,
                                fits ? "fits" : "does NOT fit: " + DescribeFootprint(fp, dev)));
  // LoRA adapters of the plan: their cost against the same plan without them.
  std::optional<AdapterCost> adapter_cost;
  if (!plan.adapters.empty()) {
    adapter_cost = EvaluateAdapterCost(g, dev, o.context);
    const AdapterCost& c = *adapter_cost;
    t.notes.push_back(fmt::format(
        "LoRA adapters attached on {} linears: +{:.0f} weight bytes, +{:.0f} flops, +{:.0f} activation bytes, +{:.0f} "
        "dispatches per step; {} {:.6f} s without them, {:.6f} s with them: adapter_tps_cost_pct {:.3f}",
        c.attached_linears, c.weight_bytes, c.flops, c.act_bytes, c.dispatches, decode ? "TPOT" : "TTFT",
        c.step_s_without, c.step_s, c.tps_cost_pct));
    t.notes.insert(t.notes.end(), c.notes.begin(), c.notes.end());
  }
  std::string text;
  if (o.format == "table") text = reports::ToText(t);
  else if (o.format == "md") text = reports::ToMarkdown(t);
  else if (o.format == "csv") text = reports::ToCsv(t);
  else if (o.format == "json") {
    // The table plus a `summary` object other tools read (keys kept stable).
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(reports::ToJson(t));
    nlohmann::ordered_json s;
    s["fidelity"] = FidelityName(b.fidelity);
    s["total_params"] = arch.TotalParameterCount();
    s["active_params"] = arch.ActiveParameterCount();
    s["weight_bytes"] = fp.weight_bytes;
    s["kv_cache_bytes_per_token"] = fp.kv_cache_bytes_per_token;
    s["kv_read_bytes"] = SumGraph(g, o.context).kv_read_bytes;
    s["footprint_bytes"] = fp.total_bytes;
    s["fits"] = fits;
    // Decode speed at --context always; a prefill run adds its TTFT.
    double tpot_s = r.total_s;
    if (!decode) {
      BuildOptions bd = b;
      bd.phase = Phase::kDecode;
      bd.prompt_tokens = 0;
      tpot_s = EvaluateStep(BuildModelGraph(arch, plan, bd), dev, o.context).total_s;
    }
    const DecodeMetrics m = DecodeFromStep(tpot_s, o.batch);
    s["tps"] = m.tps;
    s["tpot_s"] = m.tpot_s;
    if (!decode) s["ttft_s"] = r.total_s;
    if (adapter_cost) {  // decode TPS lost to the adapters, also for a prefill run
      BuildOptions bd = b;
      bd.phase = Phase::kDecode;
      bd.prompt_tokens = 0;
      s["adapter_tps_cost_pct"] =
          decode ? adapter_cost->tps_cost_pct
                 : EvaluateAdapterCost(BuildModelGraph(arch, plan, bd), dev, o.context).tps_cost_pct;
    }
    j["summary"] = s;
    j["warnings"] = warnings;
    text = j.dump(2) + "\n";
  }
  else if (o.format == "tex") text = reports::ToLatex(t);
  else throw MakeConfigError("--format", "format", "unknown format '" + o.format + "'", "table, md, csv, json or tex", "");
  if (o.out.empty()) std::cout << text;
  else reports::WriteFileAtomic(o.out, text, "--out");
}

}  // namespace

void AddExplainCommand(CLI::App& app) {
  auto o = std::make_shared<ExplainOptions>();
  CLI::App* sub = app.add_subcommand(
      "explain", "Per-operator breakdown of one setting: FLOPs, bytes by class, time, bound and share of the step.");
  sub->add_option("--model", o->model, "zoo name or YAML/config.json path")->capture_default_str();
  sub->add_option("--device", o->device, "hwspec name or YAML path")->capture_default_str();
  sub->add_option("--plan", o->plan, "quantization preset (bf16, w4, w2, w4w2-gateup, bf16w2-gateup, w4w3-gateup) or plan YAML")
      ->capture_default_str();
  sub->add_option("--fusion", o->fusion, "none or paper")->capture_default_str();
  sub->add_option("--fidelity", o->fidelity, "paper or exact")->capture_default_str();
  sub->add_option("--phase", o->phase, "decode or prefill")->capture_default_str();
  sub->add_option("--context", o->context, "attended context in tokens (decode)")->capture_default_str();
  sub->add_option("--prompt", o->prompt, "prompt length in tokens (prefill)")->capture_default_str();
  sub->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  sub->add_flag("--per-layer", o->per_layer, "one row per operator instead of one per operator across layers");
  sub->add_flag("--allow-infeasible", o->allow_infeasible,
                "print the breakdown of a setting whose memory footprint exceeds the device's memory_capacity_gb "
                "(without it: the numbers on stderr and exit status 3)");
  sub->add_option("--format", o->format, "table, md, csv, json or tex")->capture_default_str();
  sub->add_option("--out", o->out, "write to this file instead of stdout");
  sub->callback([o] { RunExplain(*o); });
}

}  // namespace lifeline::cli
