#pragma once
// The recovered model as it would be deployed: a recovery cell's LoRA
// adapters (its recipe's rank and targets) attached to a throughput cell's
// setting, forecast by the roofline (`lifeline report`'s deployed columns).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/sweep/store.hpp"
#include "roofline/spec/adapters.hpp"

namespace lifeline::sweep {

// The adapters a recovery cell trained: the recipe its outputs record.
struct RecoveryAdapters {
  int64_t rank = 0;
  std::vector<std::string> targets;  // recovery patterns: dot components, '*' one component ("mlp.gate_proj")
};
// Nullopt, with the reason in *why, when the cell trained no adapters
// (method llm-qat) or its outputs hold no recipe.
std::optional<RecoveryAdapters> AdaptersOfRecovery(const CellRow& r, std::string* why);

// True when a recovery pattern matches a Hugging Face module name as a
// contiguous run of dot-separated components ('*' matches one component), as
// the recovery harness matches its layers.
bool RecoveryPatternMatches(const std::string& pattern, const std::string& hf_name);
// The Hugging Face module name of a roofline linear ("layers.3.attn.q_proj" ->
// "model.layers.3.self_attn.q_proj"; "lm_head" stays).
std::string HfModuleName(const std::string& roofline_name);

struct DeployedForecast {
  double tps = 0;            // decode TPS per sequence with the adapters attached (BF16)
  double tps_plain = 0;      // the same setting without adapters (equals the throughput cell's TPS)
  double cost_pct = 0;       // 100 (1 - TPOT without / TPOT with)
  int attached_linears = 0;  // linears the targets matched
};

// Forecasts throughput settings with adapters attached; graphs are built once
// per (model, plan, fidelity, fusion, batch, adapters).
class DeployedForecaster {
 public:
  DeployedForecaster();
  ~DeployedForecaster();
  // `setting`: a throughput cell's inputs (model, device, plan, context,
  // fidelity, fusion, batch). Nullopt with *why when the targets match no
  // linear of the model, a linear cannot carry them, or the forecast without
  // adapters differs from `stored_tps` (the model, device or plan file changed
  // since the cell ran).
  std::optional<DeployedForecast> Forecast(const nlohmann::json& setting, const RecoveryAdapters& a,
                                           double stored_tps, std::string* why);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline::sweep
