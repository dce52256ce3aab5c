#pragma once
// `lifeline recover`: quantize -> generate data -> LoRA distillation ->
// evaluate, from a YAML recipe or flags, writing DIR/recovery.json and the
// adapters in PEFT format (DIR/adapters/). Batches of runs are sweep
// matrices with a `recovery:` section (lifeline sweep).

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "recovery/cli/recipe.hpp"

namespace lifeline::recovery {

// Results reused across runs in one process (training data, teacher and
// quantized-model evaluations), keyed by the settings they depend on.
struct RecoveryCache {
  std::map<std::string, std::vector<std::vector<int64_t>>> data;
  std::map<std::string, nlohmann::json> baseline;  // teacher + quantized metrics
};

// Runs the whole pipeline and writes recipe.out/recovery.json. Returns the
// JSON written. Throws lifeline::Error subclasses on bad input.
nlohmann::json RunRecovery(const RecoverRecipe& recipe, RecoveryCache* cache = nullptr);

// Registers the `recover` subcommand on `app`.
void AddRecoverCommand(CLI::App& app);

}  // namespace lifeline::recovery
