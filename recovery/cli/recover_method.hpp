#pragma once
// The degradation and method settings of `lifeline recover`: their flags,
// how flags combine with a recipe file, and the configs the pipeline uses.

#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "recovery/cli/recipe.hpp"
#include "recovery/degrade/degrade.hpp"
#include "recovery/model/decoder.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/train/methods.hpp"

namespace lifeline::recovery {

// Registers --degrade, --noise-rel-l2, --noise-l2, --dtype, --bitflip-rate,
// --method and --qat-ste on `cmd`, writing into `r` (and the --degrade list
// into `degrade_csv`).
void AddDegradeMethodOptions(CLI::App* cmd, RecoverRecipe& r, std::string& degrade_csv);

// Copies those options given on the command line from `flags` into `merged`
// (a noise target given as a flag replaces the other one). Then, for method
// llm-qat, refuses any adapter option, naming the flag or the recipe file's
// key and line.
void MergeDegradeMethodFlags(const CLI::App* cmd, const RecoverRecipe& flags, const std::string& degrade_csv,
                             const std::string& recipe_file, RecoverRecipe& merged);

// The degradation settings of a recipe.
DegradeConfig MakeDegradeConfig(const RecoverRecipe& r);

// What the method changed in the student before training.
struct MethodSetup {
  std::vector<std::string> ste_layers;  // llm-qat with qat_ste: layers trained through Q(W)
};
// Prepares `student` for `method`: with llm-qat and qat_ste, the `layers`
// are wrapped in straight-through fake quantization by `qcfg`.
MethodSetup SetUpMethod(Decoder& student, RecoveryMethod method, const RecoverRecipe& r, const QuantConfig& qcfg);

// Writes every parameter of `model` (float32, CPU) to a safetensors file
// under its Hugging Face name: the result of a method without adapters.
void SaveTrainedWeights(const Decoder& model, const std::filesystem::path& file);

}  // namespace lifeline::recovery
