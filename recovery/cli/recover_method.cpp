#include "recovery/cli/recover_method.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "recovery/io/safetensors.hpp"
#include "recovery/model/linear.hpp"

namespace lifeline::recovery {

void AddDegradeMethodOptions(CLI::App* cmd, RecoverRecipe& r, std::string& degrade_csv) {
  cmd->add_option("--degrade", degrade_csv,
                  "degradations applied in order to the --layers patterns, comma-separated: quant, noise, dtype, "
                  "bitflip (default quant)");
  cmd->add_option("--noise-rel-l2", r.noise_rel_l2, "noise: ||dW||/||W|| per layer")->capture_default_str();
  cmd->add_option("--noise-l2", r.noise_l2, "noise: absolute ||dW|| per layer (instead of --noise-rel-l2)");
  cmd->add_option("--dtype", r.dtype, "dtype: round trip through fp16, bf16, fp8-e4m3 or fp8-e5m2 (saturating)")
      ->capture_default_str();
  cmd->add_option("--bitflip-rate", r.bitflip_rate, "bitflip: fraction of the stored float32 bits flipped")
      ->capture_default_str();
  cmd->add_option("--method", r.method,
                  "recover-lora (LoRA, KL to the teacher), llm-qat (all parameters, KL, no adapters) or sft-lora "
                  "(LoRA, cross-entropy on the data's tokens)")
      ->capture_default_str();
  cmd->add_flag("--qat-ste", r.qat_ste,
                "llm-qat with quant last: keep the quantized weights on the grid (straight-through estimator)");
}

void MergeDegradeMethodFlags(const CLI::App* cmd, const RecoverRecipe& f, const std::string& degrade_csv,
                             const std::string& recipe_file, RecoverRecipe& merged) {
  auto given = [cmd](const char* flag) { return cmd->get_option(flag)->count() > 0; };
  if (given("--degrade")) merged.degrade = SplitPatterns(degrade_csv);
  if (given("--noise-rel-l2")) {
    merged.noise_rel_l2 = f.noise_rel_l2;
    if (!given("--noise-l2")) merged.noise_l2 = 0;
  }
  if (given("--noise-l2")) {
    merged.noise_l2 = f.noise_l2;
    if (!given("--noise-rel-l2")) merged.noise_rel_l2 = 0;
  }
  if (given("--dtype")) merged.dtype = f.dtype;
  if (given("--bitflip-rate")) merged.bitflip_rate = f.bitflip_rate;
  if (given("--method")) merged.method = f.method;
  if (given("--qat-ste")) merged.qat_ste = f.qat_ste;
  if (merged.method != "llm-qat") return;
  YAML::Node recipe;
  if (!recipe_file.empty()) recipe = LoadYamlFile(recipe_file);
  for (const std::string& k : AdapterKeys()) {
    const auto p = AdapterKeyProblem(merged, k);
    if (!p) continue;
    const std::string flag = RecipeFlag(k);
    const CLI::Option* opt = cmd->get_option_no_throw(flag);
    if (opt && opt->count() > 0) throw MakeConfigError(flag, k, p->problem, p->expected, p->hint);
    if (recipe && recipe.IsMap() && recipe[k]) throw MakeConfigError(Where(recipe_file, recipe[k]), k, p->problem, p->expected, p->hint);
  }
}

DegradeConfig MakeDegradeConfig(const RecoverRecipe& r) {
  DegradeConfig d;
  d.kinds = r.degrade;
  d.quant = {r.bits, r.group, r.scheme == "sym" ? QuantScheme::kSymmetric : QuantScheme::kAsymmetric};
  d.noise_rel_l2 = r.noise_l2 > 0 ? 0.0 : r.noise_rel_l2;
  d.noise_l2 = r.noise_l2;
  d.dtype = r.dtype;
  d.bitflip_rate = r.bitflip_rate;
  d.seed = r.seed;
  return d;
}

MethodSetup SetUpMethod(Decoder& student, RecoveryMethod method, const RecoverRecipe& r, const QuantConfig& qcfg) {
  MethodSetup s;
  if (method == RecoveryMethod::kLlmQat && r.qat_ste) s.ste_layers = AttachSteQuant(student, r.layers, qcfg, "--layers");
  return s;
}

void SaveTrainedWeights(const Decoder& model, const std::filesystem::path& file) {
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : model->named_parameters()) tensors[item.key()] = item.value().detach().to(at::kCPU).contiguous();
  WriteSafetensors(file, tensors);
}

}  // namespace lifeline::recovery
