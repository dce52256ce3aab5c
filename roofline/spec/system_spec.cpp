#include "roofline/spec/system_spec.hpp"

#include <algorithm>
#include <vector>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/yaml_util.hpp"

namespace lifeline {

const char* TopologyName(Topology t) { return t == Topology::kRing ? "ring" : "switch"; }

SystemSpec ParseSystemSpec(const YAML::Node& root, const std::string& file) {
  StrictMap m(root, file);
  SystemSpec s;
  s.file = file;
  s.name = m.String("name");
  s.description = m.OptionalString("description").value_or("");
  s.device_ref = m.String("device");
  {
    // A path relative to the system file, else a hwspec name or path.
    const std::filesystem::path rel = std::filesystem::path(file).parent_path() / s.device_ref;
    try {
      s.device_path = std::filesystem::is_regular_file(rel) ? rel.string() : s.device_ref;
      s.device = ResolveDeviceSpec(s.device_path);
    } catch (const ConfigError& e) {
      throw MakeConfigError(m.WhereKey("device"), "device", std::string("cannot load the device: ") + e.what(),
                            "a device name in hwspec/ or a device YAML path (relative to this file)", "");
    }
  }
  s.count = m.PositiveInteger("count");
  if (s.count > kMaxSystemDevices) {
    throw MakeConfigError(m.WhereKey("count"), "count",
                          std::to_string(s.count) + " devices is beyond the limit of " +
                              std::to_string(kMaxSystemDevices),
                          "1 to " + std::to_string(kMaxSystemDevices), "");
  }
  StrictMap ic = m.Map("interconnect");
  s.interconnect.link_bytes_per_s = ic.PositiveNumber("link_gb_per_s", "GB/s (1e9 bytes/s) per direction") * 1e9;
  const double lat = ic.Number("latency_s", "seconds");
  if (lat < 0) {
    throw MakeConfigError(ic.WhereKey("latency_s"), ic.KeyPath("latency_s"), "must not be negative",
                          "seconds >= 0", "");
  }
  s.interconnect.latency_s = lat;
  const std::string topo = ic.String("topology");
  if (topo == "ring") {
    s.interconnect.topology = Topology::kRing;
  } else if (topo == "switch") {
    s.interconnect.topology = Topology::kSwitch;
  } else {
    const std::string guess = DidYouMean(topo, {"ring", "switch"});
    throw MakeConfigError(ic.WhereKey("topology"), ic.KeyPath("topology"), "unknown topology '" + topo + "'",
                          "ring or switch", guess.empty() ? "" : "did you mean '" + guess + "'?");
  }
  ic.Finish();
  if (auto src = m.OptionalMap("sources")) {
    for (auto it = src->node().begin(); it != src->node().end(); ++it) {
      const std::string k = it->first.as<std::string>();
      src->Allow(k);
      s.sources[k] = it->second.as<std::string>();
    }
  }
  m.Finish();
  return s;
}

SystemSpec LoadSystemSpec(const std::filesystem::path& path) {
  return ParseSystemSpec(LoadYamlFile(path), path.string());
}

SystemSpec ResolveSystemSpec(const std::string& name_or_path) {
  const std::filesystem::path p(name_or_path);
  if (std::filesystem::is_regular_file(p)) return LoadSystemSpec(p);
  const std::filesystem::path dir = HwspecDir() / "systems";
  const std::filesystem::path f = dir / (name_or_path + ".yaml");
  if (std::filesystem::exists(f)) return LoadSystemSpec(f);
  std::vector<std::string> names;
  if (std::filesystem::is_directory(dir)) {
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  const std::string guess = DidYouMean(name_or_path, names);
  throw MakeConfigError("--system", name_or_path, "no such system in " + dir.string() + " and no such file",
                        "a system name (" + list + ") or a path to a system YAML",
                        guess.empty() ? "" : "did you mean '" + guess + "'?");
}

SystemSpec SingleDeviceSystem(const DeviceSpec& d) {
  SystemSpec s;
  s.name = d.name;
  s.description = d.description;
  s.device_ref = d.name;
  s.device_path = d.name;
  s.device = d;
  s.count = 1;
  return s;
}

}  // namespace lifeline
