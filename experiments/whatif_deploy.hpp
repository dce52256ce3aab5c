// `lifeline whatif` deployment keys: speculative decoding
// (speculative.draft_model, speculative.draft_plan, speculative.k,
// speculative.acceptance), chunked prefill (prefill_chunk_tokens), and the
// cost of a plan's attached LoRA adapters (adapter_tps_cost_pct).
#pragma once

#include <string>
#include <vector>

#include "reports/table.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline::cli {

// The deployment keys --set/--sweep accept beside whatif's own.
const std::vector<std::string>& DeployKeys();
// True for "speculative.*" and "prefill_chunk_tokens" (the key of a KEY=VALUE
// argument); an unknown "speculative.x" is refused with the known ones.
bool IsDeployArg(const std::string& key_value, const std::string& option);

// Whether the run needs the deployment tables: a deployment key is given or
// the plan has adapters.
bool DeployActive(const whatif::Setting& base, const std::vector<std::string>& deploy_sets,
                  const std::vector<std::string>& deploy_sweeps);

// One point (no sweeps): a "Deployment" table with the adapters' cost, the
// speculative step and the chunked TTFT, whichever apply. With sweeps (whatif
// axes and deployment axes together): one row per grid point with tps,
// tpot_s, ttft_s and the deployment columns. `sets`/`sweeps` are whatif's own
// arguments (already split from the deployment ones).
std::vector<reports::Table> DeployTables(const whatif::Scenario& scenario, const std::vector<std::string>& sets,
                                         const std::vector<std::string>& sweeps,
                                         const std::vector<std::string>& deploy_sets,
                                         const std::vector<std::string>& deploy_sweeps);

}  // namespace lifeline::cli
