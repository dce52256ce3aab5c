#pragma once
// Export and import of LoRA adapters in Hugging Face PEFT's format:
//   DIR/adapter_config.json      (peft_type LORA, r, lora_alpha, ...)
//   DIR/adapter_model.safetensors
//     base_model.model.<layer>.lora_A.weight  (r, in)
//     base_model.model.<layer>.lora_B.weight  (out, r)
// where <layer> is the HF module name, e.g. model.layers.0.mlp.gate_proj.

#include <filesystem>
#include <string>

#include "recovery/lora/lora_linear.hpp"
#include "recovery/model/decoder.hpp"

namespace lifeline::recovery {

// Writes the adapters of `model` (unmerged values). `base_model` goes to
// base_model_name_or_path. Throws ConfigError if the model has no adapters
// or DIR cannot be written.
void SavePeftAdapters(const Decoder& model, const std::filesystem::path& dir,
                      const std::string& base_model);

// Reads DIR, attaches adapters of the stored rank/alpha to the named layers
// of `model` (which must not have adapters yet) and loads their values.
// Returns the config read. Missing files, unknown layers or shape mismatches
// -> ConfigError naming the file.
LoraConfig LoadPeftAdapters(Decoder& model, const std::filesystem::path& dir);

}  // namespace lifeline::recovery
