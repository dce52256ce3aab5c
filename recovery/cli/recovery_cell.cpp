#include "recovery/cli/recovery_cell.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "recovery/cli/recipe.hpp"
#include "recovery/cli/recover_command.hpp"

namespace lifeline::recovery {

namespace fs = std::filesystem;
using nlohmann::json;

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

json RunCell(const json& inputs, const fs::path& work_dir) {
  json r = {{"status", "done"}};
  try {
    RecoverRecipe recipe;
    ApplyRecipeYaml(JsonToYaml(inputs.at("recipe")), "recovery cell", "recipe", recipe);
    fs::create_directories(work_dir);
    recipe.out = work_dir.string();
    recipe.resume = false;
    recipe.save_data = false;
    r["seed"] = static_cast<int64_t>(recipe.seed);
    const json out = RunRecovery(recipe);
    r["outputs"] = {{"metrics", out.at("metrics")},
                    {"recipe", out.at("recipe")},
                    {"timings", out.value("timings", json::object())},
                    {"training", out.value("training", json::object())},
                    {"seeds", out.value("seeds", json::object())},
                    {"method", out.value("method", std::string())},
                    {"trainable_params", out.value("trainable_params", json())},
                    {"train_tokens", out.value("train_tokens", json())},
                    {"degradation", out.value("degradation", json::object())},
                    {"recovery_json", (work_dir / "recovery.json").string()}};
    std::string deploy_plan_file;
    if (out.contains("deploy")) {
      // The deployed variants' metrics, for `lifeline report`; each variant's per-weight list stays in
      // recovery.json (recovery_json above).
      json deploy = out["deploy"];
      for (auto& variant : deploy["variants"]) variant.erase("weights");
      r["outputs"]["deploy"] = deploy;
      const std::string source = deploy.value("plan_source", std::string());
      if (!source.empty() && fs::is_regular_file(source)) deploy_plan_file = source;
    }
    json files = json::array();
    for (const std::string& f : {out.value("model", std::string()), out.value("tokenizer", std::string()),
                                out.contains("eval") ? out["eval"].value("text", std::string()) : std::string(),
                                deploy_plan_file}) {
      if (!f.empty()) files.push_back(f);
    }
    r["input_files"] = files;
  } catch (const InfeasibleError& e) {
    r = {{"status", "infeasible"}, {"error", e.what()}};
  } catch (const Error& e) {
    r = {{"status", "failed"}, {"error", e.what()}};
  } catch (const std::exception& e) {
    r = {{"status", "failed"}, {"error", std::string("internal: ") + e.what()}};
  }
  return r;
}

}  // namespace

void AddRecoveryCellCommand(CLI::App& app) {
  struct Opts {
    std::string inputs, work_dir, result;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("recovery-cell",
                                     "run one recovery cell of a sweep (started by `lifeline run-cell`; inputs and "
                                     "result as JSON files)");
  sub->group("");  // internal: not listed in --help
  sub->add_option("--inputs", o->inputs, "the cell's inputs (JSON)")->required();
  sub->add_option("--work-dir", o->work_dir, "the cell's work directory")->required();
  sub->add_option("--result", o->result, "where to write the result JSON")->required();
  sub->callback([o] {
    json inputs;
    {
      std::ifstream in(o->inputs);
      if (!in) throw ConfigError("--inputs " + o->inputs + ": cannot open the cell's inputs");
      try {
        inputs = json::parse(in);
      } catch (const json::exception& e) {
        throw ConfigError("--inputs " + o->inputs + ": not valid JSON (" + e.what() + ")");
      }
    }
    const json r = RunCell(inputs, o->work_dir);
    WriteFileAtomic(o->result, r.dump(2) + "\n", "--result");
  });
}

}  // namespace lifeline::recovery
