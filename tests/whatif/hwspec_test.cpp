// Every device in hwspec/ loads and cites a source for every number.

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "common/paths.hpp"
#include "common/yaml_util.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {
namespace {

TEST(Hwspec, EveryDeviceLoadsAndCitesEveryNumber) {
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(HwspecDir())) {
    if (e.path().extension() != ".yaml") continue;
    ++files;
    SCOPED_TRACE(e.path().string());
    const DeviceSpec d = LoadDeviceSpec(e.path());
    const YAML::Node root = LoadYamlFile(e.path());
    std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& path) {
      for (auto it = n.begin(); it != n.end(); ++it) {
        const std::string key = it->first.as<std::string>();
        const std::string kp = path.empty() ? key : path + "." + key;
        if (kp == "sources" || kp == "name" || kp == "description") continue;
        if (it->second.IsMap()) walk(it->second, kp);
        else EXPECT_TRUE(d.sources.count(kp) && !d.sources.at(kp).empty()) << "no source for " << kp;
      }
    };
    walk(root, "");
  }
  EXPECT_GE(files, 10);
}

TEST(Hwspec, RealDevicesAreThere) {
  for (const char* n : {"nvidia_h100_sxm", "nvidia_a100_80gb", "nvidia_rtx_4090", "nvidia_jetson_agx_orin_64gb",
                        "apple_m3_max", "amd_ryzen_ai_max_395_npu", "amd_ryzen_ai_max_395_igpu",
                        "qualcomm_snapdragon_x_elite"}) {
    const DeviceSpec d = ResolveDeviceSpec(n);
    EXPECT_GT(d.compute_ops_per_s, 1e12) << n;
    EXPECT_GT(d.memory_bandwidth_bytes_per_s, 1e11) << n;
    EXPECT_NE(d.sources.at("efficiency.memory").find("assumption"), std::string::npos) << n;
  }
}

}  // namespace
}  // namespace lifeline
