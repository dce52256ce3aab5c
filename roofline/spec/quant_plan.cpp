#include "roofline/spec/quant_plan.hpp"

#include "common/error.hpp"
#include "common/yaml_util.hpp"

namespace lifeline {

double WeightFormat::MetadataBytes(double elements) const {
  if (ggml) return elements * (GgmlBitsPerWeight(*ggml) - bits) / 8.0;
  if (!Quantized()) return 0;
  const double groups = elements / static_cast<double>(group_size);
  switch (metadata) {
    case QuantMetadata::kScaleBf16ZeroPacked: return groups * (2.0 + bits / 8.0);
    case QuantMetadata::kScaleBf16: return groups * 2.0;
    case QuantMetadata::kScaleBf16ZeroBf16: return groups * 4.0;
  }
  return 0;
}

std::string WeightFormat::Label() const {
  if (ggml) {
    std::string n = GgmlLayout(*ggml).name;
    for (auto& c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return n;
  }
  if (!Quantized()) return "BF16";
  return "INT" + std::to_string(bits) + " g" + std::to_string(group_size);
}

double KvBytesPerElement(KvDtype t) {
  // INT8/INT4 KV caches store one BF16 scale per 64 elements (per head slice).
  switch (t) {
    case KvDtype::kBf16: return 2.0;
    case KvDtype::kF16: return 2.0;
    case KvDtype::kInt8: return 1.0 + 2.0 / 64.0;
    case KvDtype::kInt4: return 0.5 + 2.0 / 64.0;
    case KvDtype::kFp8: return 1.0;  // e4m3; K and V scales are one float per layer, not per element
  }
  return 2.0;
}

std::string KvDtypeName(KvDtype t) {
  switch (t) {
    case KvDtype::kBf16: return "bf16";
    case KvDtype::kF16: return "f16";
    case KvDtype::kInt8: return "int8";
    case KvDtype::kInt4: return "int4";
    case KvDtype::kFp8: return "fp8";
  }
  return "bf16";
}

bool GlobMatch(const std::string& p, const std::string& s) {
  size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

WeightFormat QuantPlan::FormatFor(const std::string& op_name, int* rule_index) const {
  for (size_t i = 0; i < rules.size(); ++i) {
    if (GlobMatch(rules[i].pattern, op_name)) {
      if (rule_index) *rule_index = static_cast<int>(i);
      return rules[i].format;
    }
  }
  if (rule_index) *rule_index = -1;
  return WeightFormat{};
}

WeightFormat GgmlWeightFormat(GgmlType t) {
  const GgmlBlockLayout& l = GgmlLayout(t);
  WeightFormat f;
  f.bits = l.value_bits;
  f.group_size = l.block_elements > 1 ? l.block_elements : 0;
  f.ggml = t;
  return f;
}

std::vector<std::string> PresetPlanNames() {
  return {"bf16",     "w4",       "w2",        "w4w2-gateup", "bf16w2-gateup", "w4w3-gateup",
          "gguf-f32", "gguf-f16", "gguf-q8_0", "gguf-w4",     "gguf-w2",       "gguf-w4w2-gateup"};
}

QuantPlan PresetPlan(const std::string& name, const ModelArch& arch) {
  const int64_t g4 = arch.model_type == "gpt_oss" ? 64 : 128;
  const WeightFormat int4{4, g4, QuantMetadata::kScaleBf16ZeroPacked};
  const WeightFormat int2{2, 32, QuantMetadata::kScaleBf16ZeroPacked};
  const WeightFormat int3{3, 32, QuantMetadata::kScaleBf16ZeroPacked};
  const WeightFormat bf16{};
  QuantPlan p;
  p.name = name;
  p.source = "preset " + name;
  auto gateup = [&](const WeightFormat& low, const WeightFormat& rest) {
    p.rules = {{"*gate_proj", low, p.source}, {"*up_proj", low, p.source}, {"*", rest, p.source}};
  };
  if (name == "bf16") {
    p.rules = {{"*", bf16, p.source}};
  } else if (name == "w4") {
    p.rules = {{"*", int4, p.source}};
  } else if (name == "w2") {
    p.rules = {{"*", int2, p.source}};
  } else if (name == "w4w2-gateup") {
    gateup(int2, int4);
  } else if (name == "bf16w2-gateup") {
    gateup(int2, bf16);
  } else if (name == "w4w3-gateup") {
    gateup(int3, int4);
  } else if (name.starts_with("gguf-")) {
    p.kv_dtype = KvDtype::kF16;  // llama.cpp's default KV cache type
    const WeightFormat q4 = GgmlWeightFormat(GgmlType::kQ4_0), q2 = GgmlWeightFormat(GgmlType::kQ2_K);
    if (name == "gguf-f32") p.rules = {{"*", GgmlWeightFormat(GgmlType::kF32), p.source}};
    else if (name == "gguf-f16") p.rules = {{"*", GgmlWeightFormat(GgmlType::kF16), p.source}};
    else if (name == "gguf-q8_0") p.rules = {{"*", GgmlWeightFormat(GgmlType::kQ8_0), p.source}};
    else if (name == "gguf-w4") p.rules = {{"*", q4, p.source}};
    else if (name == "gguf-w2") p.rules = {{"*", q2, p.source}};
    else if (name == "gguf-w4w2-gateup") gateup(q2, q4);
  }
  if (p.rules.empty()) {
    const auto names = PresetPlanNames();
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    const std::string guess = DidYouMean(name, names);
    throw MakeConfigError("--plan", name, "unknown quantization preset and no such file",
                          "one of " + list + " or a path to a plan YAML",
                          guess.empty() ? "write your own plan file (see roofline/README.md)"
                                        : "did you mean '" + guess + "'?");
  }
  return p;
}

QuantPlan LoadQuantPlan(const std::filesystem::path& path) {
  return ParseQuantPlan(LoadYamlFile(path), path.string(), path.stem().string());
}

QuantPlan ParseQuantPlan(const YAML::Node& root, const std::string& file, const std::string& default_name) {
  StrictMap m(root, file);
  QuantPlan p;
  p.name = m.OptionalString("name").value_or(default_name);
  p.source = file;
  m.Allow("description");
  if (auto kv = m.OptionalString("kv_cache_dtype")) {
    if (*kv == "bf16") p.kv_dtype = KvDtype::kBf16;
    else if (*kv == "f16") p.kv_dtype = KvDtype::kF16;
    else if (*kv == "int8") p.kv_dtype = KvDtype::kInt8;
    else if (*kv == "int4") p.kv_dtype = KvDtype::kInt4;
    else if (*kv == "fp8") p.kv_dtype = KvDtype::kFp8;
    else throw MakeConfigError(m.WhereKey("kv_cache_dtype"), "kv_cache_dtype", "unknown dtype '" + *kv + "'",
                               "bf16, f16, int8, int4 or fp8", "");
  }
  if (m.Has("adapters")) p.adapters = ParseAdapters(m.Node("adapters"), file);
  YAML::Node rules = m.Node("rules");
  if (!rules.IsSequence() || rules.size() == 0) {
    throw MakeConfigError(Where(file, rules), "rules", "is not a non-empty list",
                          "a list of {pattern, bits, group_size[, metadata]} or {pattern, format}",
                          "first matching rule wins; end with pattern '*' to cover every linear");
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    StrictMap r(rules[i], file, "rules[" + std::to_string(i) + "]");
    QuantRule rule;
    rule.pattern = r.String("pattern");
    rule.where = Where(file, rules[i]);
    if (auto fmt = r.OptionalString("format")) {
      // A ggml storage layout: its block fixes bits, group and metadata.
      const auto t = ParseGgmlType(*fmt);
      if (!t) {
        std::vector<std::string> names;
        std::string list;
        for (const auto& l : GgmlLayouts()) {
          names.emplace_back(l.name);
          list += (list.empty() ? "" : ", ") + std::string(l.name);
        }
        const std::string guess = DidYouMean(*fmt, names);
        throw MakeConfigError(r.WhereKey("format"), r.KeyPath("format"), "unknown ggml format '" + *fmt + "'", list,
                              guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
      for (const char* k : {"bits", "group_size", "metadata"}) {
        if (r.Has(k)) {
          throw MakeConfigError(r.WhereKey(k), r.KeyPath(k), "given together with `format`",
                                "either `format` (a ggml layout) or bits/group_size/metadata",
                                "a ggml layout fixes its own bits, block size and scales; drop this key");
        }
      }
      rule.format = GgmlWeightFormat(*t);
      r.Finish();
      p.rules.push_back(rule);
      continue;
    }
    rule.format.bits = static_cast<int>(r.Integer("bits"));
    if (rule.format.bits != 16 && rule.format.bits != 8 && rule.format.bits != 4 && rule.format.bits != 3 &&
        rule.format.bits != 2) {
      throw MakeConfigError(r.WhereKey("bits"), r.KeyPath("bits"), "unsupported bit width " +
                            std::to_string(rule.format.bits), "2, 3, 4, 8 or 16 (BF16)", "");
    }
    if (rule.format.Quantized()) {
      rule.format.group_size = r.PositiveInteger("group_size");
    } else {
      r.Allow("group_size");
    }
    if (auto md = r.OptionalString("metadata")) {
      if (*md == "scale_bf16_zero_packed") rule.format.metadata = QuantMetadata::kScaleBf16ZeroPacked;
      else if (*md == "scale_bf16") rule.format.metadata = QuantMetadata::kScaleBf16;
      else if (*md == "scale_bf16_zero_bf16") rule.format.metadata = QuantMetadata::kScaleBf16ZeroBf16;
      else throw MakeConfigError(r.WhereKey("metadata"), r.KeyPath("metadata"), "unknown layout '" + *md + "'",
                                 "scale_bf16_zero_packed, scale_bf16 or scale_bf16_zero_bf16", "");
    }
    r.Finish();
    p.rules.push_back(rule);
  }
  m.Finish();
  return p;
}

QuantPlan ResolveQuantPlan(const std::string& name_or_path, const ModelArch& arch) {
  if (std::filesystem::is_regular_file(name_or_path)) return LoadQuantPlan(name_or_path);
  return PresetPlan(name_or_path, arch);
}

}  // namespace lifeline
