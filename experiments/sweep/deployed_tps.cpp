#include "experiments/sweep/deployed_tps.hpp"

#include <fmt/format.h>

#include <cmath>
#include <sstream>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"

namespace lifeline::sweep {

using nlohmann::json;

std::optional<RecoveryAdapters> AdaptersOfRecovery(const CellRow& r, std::string* why) {
  if (!r.outputs.is_object() || !r.outputs.contains("recipe") || !r.outputs["recipe"].is_object()) {
    *why = "its outputs hold no recipe";
    return std::nullopt;
  }
  const json& rc = r.outputs["recipe"];
  if (rc.value("method", std::string()) == "llm-qat") {
    *why = "method llm-qat trains every parameter and attaches no adapters";
    return std::nullopt;
  }
  if (!rc.contains("rank") || !rc["rank"].is_number_integer() || !rc.contains("lora_targets") ||
      !rc["lora_targets"].is_array() || rc["lora_targets"].empty()) {
    *why = "its recipe has no rank or lora_targets";
    return std::nullopt;
  }
  RecoveryAdapters a;
  a.rank = rc["rank"].get<int64_t>();
  for (const auto& t : rc["lora_targets"]) a.targets.push_back(t.get<std::string>());
  return a;
}

bool RecoveryPatternMatches(const std::string& pattern, const std::string& hf_name) {
  return DottedPatternMatches(pattern, hf_name);
}

std::string HfModuleName(const std::string& name) {
  if (!name.starts_with("layers.")) return name;
  std::string hf = "model." + name;
  const size_t at = hf.find(".attn.");
  if (at != std::string::npos) hf.replace(at, 6, ".self_attn.");
  return hf;
}

struct DeployedForecaster::Impl {
  struct Graphs {
    std::unique_ptr<ModelGraph> plain, lora;
    int attached = 0;
    std::string error;  // why no forecast
  };
  std::map<std::string, Graphs> graphs;
  std::map<std::string, DeviceSpec> devices;
};

DeployedForecaster::DeployedForecaster() : impl_(std::make_unique<Impl>()) {}
DeployedForecaster::~DeployedForecaster() = default;

std::optional<DeployedForecast> DeployedForecaster::Forecast(const json& in, const RecoveryAdapters& a,
                                                             double stored_tps, std::string* why) {
  const std::string model = in.at("model").get<std::string>(), plan = in.at("plan").get<std::string>();
  const std::string key = fmt::format("{}|{}|{}|{}|{}|r{}|{}", model, plan, in.at("fidelity").get<std::string>(),
                                      in.at("fusion").get<std::string>(), in.at("batch").get<int64_t>(), a.rank,
                                      fmt::join(a.targets, ","));
  auto it = impl_->graphs.find(key);
  if (it == impl_->graphs.end()) {
    Impl::Graphs g;
    try {
      const ModelArch arch = ResolveModelArch(model);
      const QuantPlan p = ResolveQuantPlan(plan, arch);
      BuildOptions o;
      o.fidelity = ParseFidelity(in.at("fidelity").get<std::string>());
      o.fusion = ParseFusionMode(in.at("fusion").get<std::string>());
      o.batch = in.at("batch").get<int64_t>();
      g.plain = std::make_unique<ModelGraph>(BuildModelGraph(arch, p, o));
      // One attached BF16 adapter per linear the recovery targets match.
      QuantPlan lp = p;
      for (auto v : g.plain->order) {
        const OpNode& n = g.plain->graph[v];
        if (n.kind != OpKind::kLinear) continue;
        for (const auto& t : a.targets) {
          if (!RecoveryPatternMatches(t, HfModuleName(n.name))) continue;
          AdapterRule r;
          r.pattern = n.name;
          r.rank = a.rank;
          r.where = "recovery lora_targets '" + t + "'";
          lp.adapters.push_back(r);
          break;
        }
      }
      if (lp.adapters.empty()) {
        g.error = fmt::format("its lora_targets ({}) match no linear of {}", fmt::join(a.targets, ", "), model);
      } else {
        g.attached = static_cast<int>(lp.adapters.size());
        g.lora = std::make_unique<ModelGraph>(BuildModelGraph(arch, lp, o));
      }
    } catch (const Error& e) {
      g.error = e.what();
    }
    it = impl_->graphs.emplace(key, std::move(g)).first;
  }
  const Impl::Graphs& g = it->second;
  if (!g.error.empty()) {
    *why = g.error;
    return std::nullopt;
  }
  const std::string device = in.at("device").get<std::string>();
  auto d = impl_->devices.find(device);
  try {
    if (d == impl_->devices.end()) d = impl_->devices.emplace(device, ResolveDeviceSpec(device)).first;
  } catch (const Error& e) {
    *why = e.what();
    return std::nullopt;
  }
  const int64_t ctx = in.at("context").get<int64_t>();
  const int64_t batch = in.at("batch").get<int64_t>();
  DeployedForecast f;
  f.attached_linears = g.attached;
  const double plain_s = EvaluateStep(*g.plain, d->second, ctx).total_s;
  const double lora_s = EvaluateStep(*g.lora, d->second, ctx).total_s;
  f.tps_plain = DecodeFromStep(plain_s, batch).tps;
  f.tps = DecodeFromStep(lora_s, batch).tps;
  f.cost_pct = 100.0 * (1.0 - plain_s / lora_s);
  if (std::fabs(f.tps_plain - stored_tps) > 1e-9 * stored_tps) {
    *why = fmt::format("the forecast without adapters ({:.6f} TPS) differs from the stored cell ({:.6f} TPS): the "
                       "model, device or plan file changed since the sweep ran; rerun it",
                       f.tps_plain, stored_tps);
    return std::nullopt;
  }
  return f;
}

}  // namespace lifeline::sweep
