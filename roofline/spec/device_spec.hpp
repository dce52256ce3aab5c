#pragma once
// DeviceSpec: what the user configures about a chip (hwspec/*.yaml). SI units
// inside the code, converted once at load from the unit-named YAML keys.

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <string>

namespace lifeline {

struct DeviceSpec {
  std::string name;         // short id, e.g. "device_a"
  std::string description;  // one line for reports
  double compute_ops_per_s = 0;              // peak INT8 ops/s (YAML int8_tops)
  double memory_bandwidth_bytes_per_s = 0;   // peak DRAM bandwidth (YAML memory_bandwidth_gb_per_s)
  double memory_capacity_bytes = 0;          // 0 = not given (YAML memory_capacity_gb)
  // Efficiencies in (0, 1]: achieved / peak.
  double memory_efficiency = 1;              // every operator's DRAM traffic
  double compute_efficiency = 1;             // linears, norms, elementwise
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
