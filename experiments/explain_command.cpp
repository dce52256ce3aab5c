// `lifeline explain`: per-operator breakdown of one setting.

#include <fmt/format.h>

#include <iostream>
#include <map>
#include <memory>

#include "experiments/commands.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline::cli {
namespace {

struct ExplainOptions {
  std::string model = "qwen3-4b";
  std::string device = "device_a";
  std::string plan = "w4w2-gateup";
  std::string fusion = "paper";
  std::string fidelity = "paper";
  std::string phase = "decode";
  int64_t context = 4096;
  int64_t prompt = 1024;
  int64_t batch = 1;
  bool per_layer = false;
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
  const ModelGraph g = BuildModelGraph(arch, plan, b);
  const StepResult r = EvaluateStep(g, dev, o.context);

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
  std::string text;
  if (o.format == "table") text = reports::ToText(t);
  else if (o.format == "md") text = reports::ToMarkdown(t);
  else if (o.format == "csv") text = reports::ToCsv(t);
  else if (o.format == "json") text = reports::ToJson(t);
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
  sub->add_option("--format", o->format, "table, md, csv, json or tex")->capture_default_str();
  sub->add_option("--out", o->out, "write to this file instead of stdout");
  sub->callback([o] { RunExplain(*o); });
}

}  // namespace lifeline::cli
