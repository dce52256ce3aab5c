#include "recovery/lora/peft.hpp"

#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "recovery/io/safetensors.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {

namespace {
const std::string kPrefix = "base_model.model.";

// "model.layers.3.mlp.gate_proj" -> "mlp.gate_proj" (PEFT matches suffixes).
std::string TargetModule(const std::string& layer) {
  const auto pos = layer.find("layers.");
  if (pos == std::string::npos) return layer;
  const auto dot = layer.find('.', pos + 7);
  return layer.substr(dot + 1);
}
}  // namespace

void SavePeftAdapters(const Decoder& model, const std::filesystem::path& dir,
                      const std::string& base_model) {
  const auto layers = LoraLayers(model);
  if (layers.empty()) throw ConfigError("SavePeftAdapters: the model has no LoRA adapters");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw ConfigError(fmt::format("{}: cannot create directory: {}", dir.string(), ec.message()));
  std::map<std::string, at::Tensor> tensors;
  std::set<std::string> targets;
  const LoraConfig& cfg = layers.front().second->config();
  for (const auto& [name, l] : layers) {
    tensors[kPrefix + name + ".lora_A.weight"] = l->lora_A().detach().to(at::kCPU).contiguous();
    tensors[kPrefix + name + ".lora_B.weight"] = l->lora_B().detach().to(at::kCPU).contiguous();
    targets.insert(TargetModule(name));
  }
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model;
  j["r"] = cfg.rank;
  j["lora_alpha"] = cfg.alpha;
  j["lora_dropout"] = cfg.dropout;
  j["target_modules"] = std::vector<std::string>(targets.begin(), targets.end());
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["modules_to_save"] = nullptr;
  j["use_rslora"] = false;
  WriteFileAtomic(dir / "adapter_config.json", j.dump(2) + "\n");
  WriteSafetensors(dir / "adapter_model.safetensors", tensors,
                   {{"format", "pt"}, {"lifeline_lora_init", LoraInitName(cfg.init)}});
}

LoraConfig LoadPeftAdapters(Decoder& model, const std::filesystem::path& dir) {
  const auto cfg_path = dir / "adapter_config.json";
  std::ifstream in(cfg_path);
  if (!in) throw ConfigError(fmt::format("{}: adapter config not found", cfg_path.string()));
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("{}: invalid JSON: {}", cfg_path.string(), e.what()));
  }
  LoraConfig cfg;
  try {
    if (j.at("peft_type").get<std::string>() != "LORA") {
      throw ConfigError(fmt::format("{}: key 'peft_type': expected LORA", cfg_path.string()));
    }
    cfg.rank = j.at("r").get<int64_t>();
    cfg.alpha = j.at("lora_alpha").get<double>();
    cfg.dropout = j.value("lora_dropout", 0.0);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("{}: {}", cfg_path.string(), e.what()));
  }
  const auto st_path = dir / "adapter_model.safetensors";
  const auto tensors = ReadSafetensors(st_path);
  std::vector<std::string> layers;
  for (const auto& [name, t] : tensors) {
    const std::string suffix = ".lora_A.weight";
    if (name.rfind(kPrefix, 0) != 0 || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    layers.push_back(name.substr(kPrefix.size(), name.size() - kPrefix.size() - suffix.size()));
  }
  if (layers.empty()) {
    throw ConfigError(fmt::format("{}: no '{}*.lora_A.weight' tensors", st_path.string(), kPrefix));
  }
  const auto all = model->Linears();
  for (const auto& layer : layers) {
    bool found = false;
    for (const auto& [name, lin] : all) found = found || name == layer;
    if (!found) {
      throw ConfigError(fmt::format("{}: adapter for unknown layer '{}'", st_path.string(), layer));
    }
  }
  // Full names match exactly themselves (every component must match).
  cfg.targets = layers;
  AttachLora(model, cfg, st_path.string());
  torch::NoGradGuard no_grad;
  for (const auto& [name, l] : LoraLayers(model)) {
    const auto a = tensors.find(kPrefix + name + ".lora_A.weight");
    const auto b = tensors.find(kPrefix + name + ".lora_B.weight");
    if (a == tensors.end() || b == tensors.end()) {
      throw ConfigError(fmt::format("{}: missing lora_A/lora_B for '{}'", st_path.string(), name));
    }
    if (a->second.sizes() != l->lora_A().sizes() || b->second.sizes() != l->lora_B().sizes()) {
      throw ConfigError(fmt::format("{}: adapter shapes for '{}' do not match r={} and the layer",
                                    st_path.string(), name, cfg.rank));
    }
    l->lora_A().copy_(a->second);
    l->lora_B().copy_(b->second);
  }
  return cfg;
}

}  // namespace lifeline::recovery
