#pragma once
// DeviceSpec: what the user configures about a chip (hwspec/*.yaml). SI units
// inside the code, converted once at load from the unit-named YAML keys.

#include <yaml-cpp/yaml.h>

#include <array>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline {

// Weight formats of linear operators that can carry their own compute
// efficiency (YAML `efficiency.linear_compute_<name>`): ggml's storage layouts
// and the plans' generic INTb group formats. Values index
// DeviceSpec::linear_compute_efficiency.
enum class LinearFormat : int {
  kF32,   // ggml f32
  kF16,   // ggml f16
  kBf16,  // BF16 (unquantized plan linears)
  kQ8_0,
  kQ4_0,
  kQ4_K,
  kQ3_K,
  kQ2_K,
  kInt2,  // plan `bits: 2` with BF16 group scales
  kInt3,
  kInt4,
  kInt8,
};
inline constexpr int kLinearFormatCount = 12;
// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q3_k", "q2_k", "int2", "int3", "int4", "int8".
const char* LinearFormatName(LinearFormat f);
// The inverse of LinearFormatName (lower case only); nullopt for other names.
std::optional<LinearFormat> ParseLinearFormat(std::string_view name);

// Datatypes an operator computes in; each may have its own peak (YAML
// `peak_tops.<name>`). Values index DeviceSpec::peak_ops_per_s.
enum class ComputeDtype : int { kFp32, kBf16, kFp16, kFp8, kInt8, kInt4 };
inline constexpr int kComputeDtypeCount = 6;
// "fp32", "bf16", "fp16", "fp8", "int8", "int4".
const char* ComputeDtypeName(ComputeDtype t);
// The inverse of ComputeDtypeName; nullopt for other names.
std::optional<ComputeDtype> ParseComputeDtype(std::string_view name);

struct DeviceSpec {
  std::string name;         // short id, e.g. "device_a"
  std::string description;  // one line for reports
  double compute_ops_per_s = 0;              // peak INT8 ops/s (YAML int8_tops)
  // Peak ops/s per compute datatype (YAML peak_tops.<dtype>, INT8 excepted:
  // int8_tops). 0 = not listed. A device without peak_tops runs every
  // datatype at int8_tops (one peak); one with it runs INT8 at int8_tops and
  // refuses a datatype it does not list (PeakOpsPerS throws).
  std::array<double, kComputeDtypeCount> peak_ops_per_s{};
  bool HasPeakTable() const {
    for (size_t i = 0; i < peak_ops_per_s.size(); ++i)
      if (peak_ops_per_s[i] > 0) return true;
    return false;
  }
  // True when an operator computing in `t` has a peak on this device.
  bool HasPeak(ComputeDtype t) const {
    return t == ComputeDtype::kInt8 || !HasPeakTable() || peak_ops_per_s[static_cast<size_t>(t)] > 0;
  }
  // Peak ops/s of datatype `t`; throws ConfigError naming peak_tops.<t> when
  // the device lists peaks but not this one.
  double PeakOpsPerS(ComputeDtype t) const;
  double memory_bandwidth_bytes_per_s = 0;   // peak DRAM bandwidth (YAML memory_bandwidth_gb_per_s)
  double memory_capacity_bytes = 0;          // 0 = not given (YAML memory_capacity_gb)
  // Efficiencies in (0, 1]: achieved / peak.
  double memory_efficiency = 1;              // every operator's DRAM traffic
  double compute_efficiency = 1;             // norms, elementwise, linears without a per-format value
  double attention_compute_efficiency = 1;   // QK, softmax, PV (fused or not)
  // MoE expert kernels' weight unpacking, per weight format of the expert
  // down projection (the paper's tables need a format-dependent term there).
  double moe_expert_compute_int2_efficiency = 1;
  double moe_expert_compute_int3_efficiency = 1;  // YAML default: the INT4 value
  double moe_expert_compute_int4_efficiency = 1;
  double moe_expert_compute_int8_efficiency = 1;  // YAML default: the INT4 value
  double MoeExpertEfficiency(int bits) const {
    return bits <= 2 ? moe_expert_compute_int2_efficiency
           : bits == 3 ? moe_expert_compute_int3_efficiency
           : bits == 4 ? moe_expert_compute_int4_efficiency
                       : moe_expert_compute_int8_efficiency;
  }
  // Compute efficiency of linear operators by weight format (YAML
  // efficiency.linear_compute_<format>): a CPU matrix-vector product runs at
  // its dequantise-and-dot rate, which depends on the block layout. 0 = not
  // set: the linear uses compute_efficiency (whatever its value then is).
  std::array<double, kLinearFormatCount> linear_compute_efficiency{};
  bool HasLinearComputeEfficiency(LinearFormat f) const {
    return linear_compute_efficiency[static_cast<size_t>(f)] > 0;
  }
  double LinearComputeEfficiency(LinearFormat f) const {
    const double e = linear_compute_efficiency[static_cast<size_t>(f)];
    return e > 0 ? e : compute_efficiency;
  }
  // Overheads.
  double dispatch_overhead_s = 0;        // per kernel dispatch
  double head_dispatch_overhead_s = 0;   // per per-head kernel instance (q/k norm)
  std::map<std::string, std::string> sources;  // key -> citation for its number
};

// Parses and validates a device spec from a YAML mapping; `file` names the
// source in errors.
DeviceSpec ParseDeviceSpec(const YAML::Node& root, const std::string& file);
DeviceSpec LoadDeviceSpec(const std::filesystem::path& path);
// A name in hwspec/ ("device_a") or a path to a YAML file.
DeviceSpec ResolveDeviceSpec(const std::string& name_or_path);
// Writes the spec back as YAML in the same schema (used by calibration).
std::string DeviceSpecToYaml(const DeviceSpec& d);

}  // namespace lifeline
