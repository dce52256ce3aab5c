// Recovery cells: `lifeline recover`'s pipeline with the cell's recipe. Built
// against the recovery library only when LIFELINE_HAVE_TORCH is defined.

#include <fmt/format.h>

#include <chrono>

#include "experiments/sweep/cell_exec.hpp"
#include "experiments/sweep/sha256.hpp"
#include "common/error.hpp"

#ifdef LIFELINE_HAVE_TORCH
#include <yaml-cpp/yaml.h>

#include "recovery/cli/recipe.hpp"
#include "recovery/cli/recover_command.hpp"
#endif

namespace lifeline::sweep {

namespace fs = std::filesystem;
using nlohmann::json;

#ifdef LIFELINE_HAVE_TORCH
namespace {

YAML::Node JsonToYaml(const json& j) {
  if (j.is_array()) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& e : j) n.push_back(JsonToYaml(e));
    return n;
  }
  if (j.is_object()) {
    YAML::Node n(YAML::NodeType::Map);
    for (const auto& [k, v] : j.items()) n[k] = JsonToYaml(v);
    return n;
  }
  if (j.is_string()) return YAML::Node(j.get<std::string>());
  return YAML::Node(j.dump());  // numbers and booleans as YAML scalars
}

}  // namespace

bool RecoveryCellsAvailable() { return true; }

CellResult RunRecoveryCell(const json& inputs, const fs::path& work_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  CellResult r;
  try {
    recovery::RecoverRecipe recipe;
    recovery::ApplyRecipeYaml(JsonToYaml(inputs.at("recipe")), "recovery cell", "recipe", recipe);
    fs::create_directories(work_dir);
    recipe.out = work_dir.string();
    recipe.resume = false;
    recipe.save_data = false;
    r.seed = static_cast<int64_t>(recipe.seed);
    const json out = recovery::RunRecovery(recipe);
    r.outputs = {{"metrics", out.at("metrics")},
                 {"recipe", out.at("recipe")},
                 {"timings", out.value("timings", json::object())},
                 {"training", out.value("training", json::object())},
                 {"seeds", out.value("seeds", json::object())},
                 {"recovery_json", (work_dir / "recovery.json").string()}};
    for (const std::string f : {out.value("model", std::string()), out.value("tokenizer", std::string()),
                                out.contains("eval") ? out["eval"].value("text", std::string()) : std::string()}) {
      std::error_code ec;
      if (!f.empty() && fs::is_regular_file(f, ec)) r.checksums[f] = Sha256File(f);
    }
  } catch (const InfeasibleError& e) {
    r.status = CellStatus::kInfeasible;
    r.error = e.what();
  } catch (const Error& e) {
    r.status = CellStatus::kFailed;
    r.error = e.what();
  } catch (const std::exception& e) {
    r.status = CellStatus::kFailed;
    r.error = std::string("internal: ") + e.what();
  }
  if (r.status != CellStatus::kDone) r.outputs = nullptr;
  r.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

#else

bool RecoveryCellsAvailable() { return false; }

CellResult RunRecoveryCell(const json& inputs, const fs::path& work_dir) {
  CellResult r;
  r.status = CellStatus::kFailed;
  r.error =
      "recovery cells need the LibTorch build of lifeline (this one was configured with LIFELINE_TORCH=OFF or "
      "without LibTorch); rebuild with -DLIFELINE_TORCH=ON and rerun the sweep: this cell will be retried";
  r.outputs = nullptr;
  return r;
}

#endif

}  // namespace lifeline::sweep
