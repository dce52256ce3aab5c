#pragma once
// SystemSpec: several identical devices joined by one interconnect
// (hwspec/systems/*.yaml). The devices are ordinary hwspec devices; the
// interconnect carries the collectives of tensor, pipeline and expert
// parallelism (roofline/eval/parallel.hpp).
//
//   name: dgx_h100
//   device: nvidia_h100_sxm     # hwspec name, or a YAML path relative to this file
//   count: 8                    # devices
//   interconnect:
//     link_gb_per_s: 450        # one device's bandwidth in one direction
//     latency_s: 3e-6           # per message (per hop on a ring)
//     topology: switch          # ring or switch

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "roofline/spec/device_spec.hpp"

namespace lifeline {

enum class Topology {
  kRing,    // each device has a link to its two neighbours; collectives go round the ring
  kSwitch,  // each device has one link into a non-blocking switch (NVSwitch)
};
const char* TopologyName(Topology t);

struct Interconnect {
  double link_bytes_per_s = 0;  // one device's bandwidth in one direction (YAML link_gb_per_s)
  double latency_s = 0;         // per message, or per hop on a ring (YAML latency_s)
  Topology topology = Topology::kSwitch;
};

struct SystemSpec {
  std::string name;         // "dgx_h100"
  std::string description;  // one line for reports
  std::string device_ref;   // the `device:` value as written
  std::string device_path;  // what ResolveDeviceSpec takes for it: a hwspec name or a file path
  DeviceSpec device;        // the device every slot holds
  int64_t count = 1;        // devices
  Interconnect interconnect;
  std::string file;         // where it was loaded from (errors)
  std::map<std::string, std::string> sources;  // key -> citation
};

// Largest device count a system may declare (a typo cannot ask lifeline to
// search millions of layouts; the largest NVLink domain is 576 GPUs).
inline constexpr int64_t kMaxSystemDevices = 4096;

// Parses and validates a system; `file` names the source in errors and
// anchors a relative device path.
SystemSpec ParseSystemSpec(const YAML::Node& root, const std::string& file);
SystemSpec LoadSystemSpec(const std::filesystem::path& path);
// A name in hwspec/systems/ ("dgx_h100") or a path to a YAML file.
SystemSpec ResolveSystemSpec(const std::string& name_or_path);
// A single device as a system of one (no interconnect traffic is possible).
SystemSpec SingleDeviceSystem(const DeviceSpec& d);

}  // namespace lifeline
