#include "roofline/spec/device_spec.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <iomanip>
#include <sstream>
#include <vector>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"

namespace lifeline {

namespace {

constexpr std::array<const char*, kLinearFormatCount> kLinearFormatNames = {
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q3_k", "q2_k", "int2", "int3", "int4", "int8"};
constexpr std::string_view kLinearComputePrefix = "linear_compute_";

std::string LinearFormatList() {
  std::string list;
  for (const char* n : kLinearFormatNames) list += (list.empty() ? "" : ", ") + std::string(n);
  return list;
}

constexpr std::array<const char*, kComputeDtypeCount> kComputeDtypeNames = {"fp32", "bf16", "fp16",
                                                                            "fp8",  "int8", "int4"};

}  // namespace

const char* ComputeDtypeName(ComputeDtype t) { return kComputeDtypeNames[static_cast<size_t>(t)]; }

std::optional<ComputeDtype> ParseComputeDtype(std::string_view name) {
  for (int i = 0; i < kComputeDtypeCount; ++i) {
    if (name == kComputeDtypeNames[static_cast<size_t>(i)]) return static_cast<ComputeDtype>(i);
  }
  return std::nullopt;
}

double DeviceSpec::PeakOpsPerS(ComputeDtype t) const {
  if (t == ComputeDtype::kInt8 || !HasPeakTable()) return compute_ops_per_s;
  const double p = peak_ops_per_s[static_cast<size_t>(t)];
  if (p > 0) return p;
  std::string listed;
  for (int i = 0; i < kComputeDtypeCount; ++i) {
    if (peak_ops_per_s[static_cast<size_t>(i)] > 0) listed += std::string(", ") + kComputeDtypeNames[static_cast<size_t>(i)];
  }
  throw MakeConfigError("device " + name, std::string("peak_tops.") + ComputeDtypeName(t),
                        std::string("an operator computes in ") + ComputeDtypeName(t) +
                            " but the device lists no peak for it (peak_tops has int8" + listed + ")",
                        std::string("peak_tops.") + ComputeDtypeName(t) + " in the device YAML",
                        "add the datasheet figure if the chip has such units; otherwise choose a plan whose "
                        "linears compute in a listed datatype (roofline/README.md, \"Compute datatype\")");
}

const char* LinearFormatName(LinearFormat f) { return kLinearFormatNames[static_cast<size_t>(f)]; }

std::optional<LinearFormat> ParseLinearFormat(std::string_view name) {
  for (int i = 0; i < kLinearFormatCount; ++i) {
    if (name == kLinearFormatNames[static_cast<size_t>(i)]) return static_cast<LinearFormat>(i);
  }
  return std::nullopt;
}

DeviceSpec ParseDeviceSpec(const YAML::Node& root, const std::string& file) {
  StrictMap m(root, file);
  DeviceSpec d;
  d.name = m.String("name");
  d.description = m.OptionalString("description").value_or("");
  d.compute_ops_per_s = m.PositiveNumber("int8_tops", "tera-operations per second") * 1e12;
  d.memory_bandwidth_bytes_per_s = m.PositiveNumber("memory_bandwidth_gb_per_s", "GB/s (1e9 bytes/s)") * 1e9;
  if (auto p = m.OptionalMap("peak_tops")) {
    std::vector<std::string> names;
    for (int i = 0; i < kComputeDtypeCount; ++i) {
      if (static_cast<ComputeDtype>(i) != ComputeDtype::kInt8) names.emplace_back(kComputeDtypeNames[static_cast<size_t>(i)]);
    }
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    for (auto it = p->node().begin(); it != p->node().end(); ++it) {
      const std::string k = it->first.as<std::string>();
      const auto t = ParseComputeDtype(k);
      if (t == ComputeDtype::kInt8) {
        throw MakeConfigError(Where(file, it->first), p->KeyPath(k), "the INT8 peak is int8_tops",
                              "peak_tops keys " + list, "move the value to int8_tops (one key per number)");
      }
      if (!t) {
        const std::string guess = DidYouMean(k, names);
        throw MakeConfigError(Where(file, it->first), p->KeyPath(k), "no compute datatype '" + k + "'",
                              "peak_tops keys " + list + " (INT8: int8_tops)",
                              guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
      d.peak_ops_per_s[static_cast<size_t>(*t)] = p->PositiveNumber(k, "tera-operations per second") * 1e12;
    }
    p->Finish();
  }
  if (auto cap = m.OptionalNumber("memory_capacity_gb", "GB (1e9 bytes)")) {
    if (*cap <= 0) {
      throw MakeConfigError(m.WhereKey("memory_capacity_gb"), "memory_capacity_gb", "must be positive",
                            "a number > 0 in GB", "leave the key out when unknown");
    }
    d.memory_capacity_bytes = *cap * 1e9;
  }
  StrictMap e = m.Map("efficiency");
  d.memory_efficiency = e.Fraction("memory");
  d.compute_efficiency = e.Fraction("compute");
  d.attention_compute_efficiency = e.Fraction("attention_compute");
  d.moe_expert_compute_int2_efficiency = e.Fraction("moe_expert_compute_int2");
  d.moe_expert_compute_int4_efficiency = e.Fraction("moe_expert_compute_int4");
  d.moe_expert_compute_int3_efficiency =
      e.Has("moe_expert_compute_int3") ? e.Fraction("moe_expert_compute_int3") : d.moe_expert_compute_int4_efficiency;
  d.moe_expert_compute_int8_efficiency =
      e.Has("moe_expert_compute_int8") ? e.Fraction("moe_expert_compute_int8") : d.moe_expert_compute_int4_efficiency;
  // Per-format linear efficiencies: optional, default efficiency.compute.
  for (int i = 0; i < kLinearFormatCount; ++i) {
    const std::string key = std::string(kLinearComputePrefix) + kLinearFormatNames[static_cast<size_t>(i)];
    if (e.Has(key)) d.linear_compute_efficiency[static_cast<size_t>(i)] = e.Fraction(key);
  }
  // A linear_compute_ key naming no format: say which formats there are.
  for (auto it = e.node().begin(); it != e.node().end(); ++it) {
    const std::string k = it->first.as<std::string>();
    if (k.rfind(kLinearComputePrefix, 0) != 0) continue;
    const std::string fmt = k.substr(kLinearComputePrefix.size());
    if (ParseLinearFormat(fmt)) continue;
    std::vector<std::string> names(kLinearFormatNames.begin(), kLinearFormatNames.end());
    std::string guess = DidYouMean(fmt, names);
    if (guess.empty()) {
      // Case or separator slips: "Q4_0", "q4k", "q4-0".
      std::string norm;
      for (char c : fmt) {
        if (std::isalnum(static_cast<unsigned char>(c))) norm += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      for (const auto& n : names) {
        std::string nn;
        for (char c : n) if (c != '_') nn += c;
        if (nn == norm) guess = n;
      }
    }
    throw MakeConfigError(Where(file, it->first), e.KeyPath(k), "no weight format '" + fmt + "'",
                          "efficiency.linear_compute_<format> with <format> one of " + LinearFormatList(),
                          guess.empty() ? "formats are ggml's lower-case type names or intN"
                                        : "did you mean '" + std::string(kLinearComputePrefix) + guess + "'?");
  }
  e.Finish();
  if (auto o = m.OptionalMap("overhead")) {
    auto nonneg = [&](const char* key) {
      const double v = o->OptionalNumber(key, "seconds").value_or(0.0);
      if (v < 0) {
        throw MakeConfigError(o->WhereKey(key), o->KeyPath(key), "must not be negative", "seconds >= 0", "");
      }
      return v;
    };
    d.dispatch_overhead_s = nonneg("dispatch_s");
    d.head_dispatch_overhead_s = nonneg("head_dispatch_s");
    o->Finish();
  }
  if (auto s = m.OptionalMap("sources")) {
    for (auto it = s->node().begin(); it != s->node().end(); ++it) {
      const std::string k = it->first.as<std::string>();
      s->Allow(k);
      d.sources[k] = it->second.as<std::string>();
    }
  }
  m.Finish();
  return d;
}

DeviceSpec LoadDeviceSpec(const std::filesystem::path& path) {
  return ParseDeviceSpec(LoadYamlFile(path), path.string());
}

DeviceSpec ResolveDeviceSpec(const std::string& name_or_path) {
  const std::filesystem::path p(name_or_path);
  if (std::filesystem::is_regular_file(p)) return LoadDeviceSpec(p);
  const std::filesystem::path f = HwspecDir() / (name_or_path + ".yaml");
  if (std::filesystem::exists(f)) return LoadDeviceSpec(f);
  std::vector<std::string> names;
  if (std::filesystem::is_directory(HwspecDir())) {
    for (const auto& e : std::filesystem::directory_iterator(HwspecDir())) {
      if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string guess = DidYouMean(name_or_path, names);
  throw MakeConfigError("--device", name_or_path, "no such device in " + HwspecDir().string() + " and no such file",
                        "a device name (" + list + ") or a path to a YAML file",
                        guess.empty() ? "" : "did you mean '" + guess + "'?");
}

std::string DeviceSpecToYaml(const DeviceSpec& d) {
  std::ostringstream o;
  o << std::setprecision(9);
  auto q = [](const std::string& s) {
    std::string r = "\"";
    for (char c : s) r += (c == '"' ? std::string("\\\"") : std::string(1, c));
    return r + "\"";
  };
  o << "name: " << q(d.name) << "\n";
  if (!d.description.empty()) o << "description: " << q(d.description) << "\n";
  o << "int8_tops: " << d.compute_ops_per_s / 1e12 << "\n";
  o << "memory_bandwidth_gb_per_s: " << d.memory_bandwidth_bytes_per_s / 1e9 << "\n";
  if (d.memory_capacity_bytes > 0) o << "memory_capacity_gb: " << d.memory_capacity_bytes / 1e9 << "\n";
  if (d.HasPeakTable()) {
    o << "peak_tops:\n";
    for (int i = 0; i < kComputeDtypeCount; ++i) {
      if (d.peak_ops_per_s[static_cast<size_t>(i)] > 0)
        o << "  " << kComputeDtypeNames[static_cast<size_t>(i)] << ": " << d.peak_ops_per_s[static_cast<size_t>(i)] / 1e12 << "\n";
    }
  }
  o << "efficiency:\n"
    << "  memory: " << d.memory_efficiency << "\n"
    << "  compute: " << d.compute_efficiency << "\n"
    << "  attention_compute: " << d.attention_compute_efficiency << "\n"
    << "  moe_expert_compute_int2: " << d.moe_expert_compute_int2_efficiency << "\n"
    << "  moe_expert_compute_int4: " << d.moe_expert_compute_int4_efficiency << "\n";
  // INT3/INT8 default to the INT4 value: written only when they differ.
  if (d.moe_expert_compute_int3_efficiency != d.moe_expert_compute_int4_efficiency)
    o << "  moe_expert_compute_int3: " << d.moe_expert_compute_int3_efficiency << "\n";
  if (d.moe_expert_compute_int8_efficiency != d.moe_expert_compute_int4_efficiency)
    o << "  moe_expert_compute_int8: " << d.moe_expert_compute_int8_efficiency << "\n";
  // Per-format linear efficiencies default to efficiency.compute: written only when set.
  for (int i = 0; i < kLinearFormatCount; ++i) {
    if (d.HasLinearComputeEfficiency(static_cast<LinearFormat>(i)))
      o << "  " << kLinearComputePrefix << kLinearFormatNames[static_cast<size_t>(i)] << ": "
        << d.linear_compute_efficiency[static_cast<size_t>(i)] << "\n";
  }
  o << "overhead:\n"
    << "  dispatch_s: " << d.dispatch_overhead_s << "\n"
    << "  head_dispatch_s: " << d.head_dispatch_overhead_s << "\n";
  if (!d.sources.empty()) {
    o << "sources:\n";
    for (const auto& [k, v] : d.sources) o << "  " << k << ": " << q(v) << "\n";
  }
  return o.str();
}

}  // namespace lifeline
