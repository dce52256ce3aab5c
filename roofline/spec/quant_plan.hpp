#pragma once
// Quantization plan: per-linear weight format assigned by name patterns, and
// the KV-cache dtype. Presets reproduce the paper's configurations.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "roofline/spec/adapters.hpp"
#include "roofline/spec/ggml_format.hpp"
#include "roofline/spec/model_arch.hpp"

namespace lifeline {

// How a group's quantization parameters are stored.
enum class QuantMetadata {
  kScaleBf16ZeroPacked,  // BF16 scale + zero point at the weight's bit width (paper)
  kScaleBf16,            // symmetric: BF16 scale only
  kScaleBf16ZeroBf16,    // BF16 scale + BF16 zero point
};

struct WeightFormat {
  int bits = 16;             // 16 = BF16 (no quantization); 2, 3, 4, 8 = INTb; 32 = F32 (ggml only)
  int64_t group_size = 0;    // elements per scale/zero group along the input dim (0 for BF16)
  QuantMetadata metadata = QuantMetadata::kScaleBf16ZeroPacked;
  // Set when the weight is stored in one of ggml's block layouts (plan rule
  // `format: q4_0`): bits is then the layout's value bits, group_size its block
  // elements, and the metadata bytes are the rest of the block (scales, mins).
  std::optional<GgmlType> ggml;

  bool Quantized() const { return bits < 16; }
  // Bytes of the packed weight values alone for `elements` weights.
  double ValueBytes(double elements) const { return elements * bits / 8.0; }
  // Value + metadata bytes per weight (Q4_0: 4.5 / 8, BF16: 2).
  double BytesPerWeight() const { return (ValueBytes(1e6) + MetadataBytes(1e6)) / 1e6; }
  // Bytes of scales/zeros for `elements` weights.
  double MetadataBytes(double elements) const;
  std::string Label() const;  // "INT2 g32", "BF16", "Q4_0"
};

enum class KvDtype { kBf16, kInt8, kInt4, kF16, kFp8 };  // kFp8: e4m3, one byte, per-tensor scales
double KvBytesPerElement(KvDtype t);  // includes per-group scale amortized
std::string KvDtypeName(KvDtype t);

struct QuantRule {
  std::string pattern;  // glob on operator names ("*.mlp.gate_proj", "lm_head", "*")
  WeightFormat format;
  std::string where;    // source of the rule for error messages
};

struct QuantPlan {
  std::string name;               // preset or file stem
  std::vector<QuantRule> rules;   // first match wins; unmatched linears stay BF16
  KvDtype kv_dtype = KvDtype::kBf16;
  std::string source;             // file or "preset"
  std::vector<AdapterRule> adapters;  // LoRA adapters (`adapters:`), first match wins; none by default

  // Format for a linear named `op_name`; sets *rule_index (or -1 when none).
  WeightFormat FormatFor(const std::string& op_name, int* rule_index = nullptr) const;
};

// The WeightFormat of a ggml storage type.
WeightFormat GgmlWeightFormat(GgmlType t);

// Glob match with '*' (any run of characters) on the whole name.
bool GlobMatch(const std::string& pattern, const std::string& name);

// Preset names: bf16, w4, w2, w4w2-gateup, bf16w2-gateup, w4w3-gateup
// (INT4 groups are 128, or 64 for gpt_oss, as in the paper), and the ggml
// layouts llama.cpp runs: gguf-f32, gguf-f16, gguf-q8_0, gguf-w4 (Q4_0 on every
// linear), gguf-w2 (Q2_K), gguf-w4w2-gateup (Q2_K on gate/up, Q4_0 elsewhere),
// all with an f16 KV cache.
QuantPlan PresetPlan(const std::string& name, const ModelArch& arch);
std::vector<std::string> PresetPlanNames();
QuantPlan LoadQuantPlan(const std::filesystem::path& path);
// Parses a plan YAML mapping (strict, as LoadQuantPlan does for a file);
// `file` names the source in errors, `default_name` is used without `name`.
QuantPlan ParseQuantPlan(const YAML::Node& root, const std::string& file, const std::string& default_name);
// A preset name or a path to a plan YAML.
QuantPlan ResolveQuantPlan(const std::string& name_or_path, const ModelArch& arch);

}  // namespace lifeline
