// `lifeline probe` as a user runs it: the device YAML it writes loads, every
// number in it has a source, and bad flags fail with clear errors.

#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/subprocess.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {
namespace {

namespace fs = std::filesystem;

// Runs `lifeline probe ARGS` with stderr merged into the output. The
// llama.cpp driver is hidden (LIFELINE_LLAMA_DRIVER names no file) unless
// `driver` is given, so these tests time no ggml kernels.
ProcessResult Probe(const std::vector<std::string>& args) {
  setenv("LIFELINE_LLAMA_DRIVER", "/nonexistent/lifeline-llama", 1);
  std::vector<std::string> argv = {LIFELINE_BINARY, "probe"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv, true);
  unsetenv("LIFELINE_LLAMA_DRIVER");
  return r;
}

// Every number in the YAML (top-level scalars and the efficiency/overhead
// entries) as its key path: "int8_tops", "efficiency.memory", ...
std::vector<std::string> NumberKeys(const YAML::Node& root) {
  std::vector<std::string> keys;
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (k == "name" || k == "description" || k == "sources") continue;
    if (kv.second.IsMap()) {
      for (const auto& inner : kv.second) keys.push_back(k + "." + inner.first.as<std::string>());
    } else {
      keys.push_back(k);
    }
  }
  return keys;
}

class ProbeTest : public ::testing::Test {
 protected:
  fs::path yaml_ = fs::temp_directory_path() / ("lifeline_probe_test_" + std::to_string(getpid()) + ".yaml");
  void TearDown() override { fs::remove(yaml_); }
};

TEST_F(ProbeTest, WritesADeviceTheLoaderReadsWithASourceForEveryNumber) {
  const ProcessResult r =
      Probe({"--size-mb", "16", "--matrix", "128", "--repeats", "1", "--threads", "1", "--write", yaml_.string()});
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* s :
       {"memory_bandwidth_gb_per_s", "int8_tops", "OpenBLAS sgemm", "ggml kernels not measured", "wrote "})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;

  const DeviceSpec d = ResolveDeviceSpec(yaml_.string());
  EXPECT_EQ(LoadDeviceSpec(yaml_).name, "this_machine");
  EXPECT_GT(d.memory_bandwidth_bytes_per_s, 1e8) << "read bandwidth below 0.1 GB/s";
  EXPECT_GT(d.compute_ops_per_s, 1e8) << "sgemm below 0.1 GFLOP/s";
  EXPECT_GT(d.memory_capacity_bytes, 0);

  const YAML::Node root = YAML::LoadFile(yaml_.string());
  for (const std::string& k : NumberKeys(root)) {
    auto it = d.sources.find(k);
    ASSERT_NE(it, d.sources.end()) << "no source for " << k;
    EXPECT_FALSE(it->second.empty()) << k;
  }
  EXPECT_NE(d.sources.at("memory_bandwidth_gb_per_s").find("summing a 16 MiB array"), std::string::npos)
      << d.sources.at("memory_bandwidth_gb_per_s");
  EXPECT_NE(d.sources.at("memory_bandwidth_gb_per_s").find("memcpy"), std::string::npos);
  EXPECT_NE(d.sources.at("int8_tops").find("cblas_sgemm"), std::string::npos) << d.sources.at("int8_tops");
  EXPECT_NE(d.sources.at("int8_tops").find("stands in for the device peak"), std::string::npos);
  // Without the driver the ggml numbers are said to be unmeasured and left at their defaults.
  for (const char* f : {"f32", "f16", "q8_0", "q4_0", "q4_k", "q3_k", "q2_k"}) {
    const std::string key = std::string("efficiency.linear_compute_") + f;
    ASSERT_TRUE(d.sources.count(key)) << key;
    EXPECT_NE(d.sources.at(key).find("not measured"), std::string::npos) << d.sources.at(key);
    EXPECT_FALSE(root["efficiency"]["linear_compute_" + std::string(f)]) << key << " written without a measurement";
  }
  EXPECT_NE(d.sources.at("overhead.dispatch_s").find("not measured"), std::string::npos);
  EXPECT_EQ(d.dispatch_overhead_s, 0.0);
}

TEST_F(ProbeTest, BadFlagsFailWithClearErrors) {
  const long hw = sysconf(_SC_NPROCESSORS_ONLN);
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> fragments;
  } cases[] = {
      {{"--threads", "100000"}, {"--threads", "100000 is out of range", "4x the hardware threads"}},
      {{"--threads", "-1"}, {"--threads", "out of range"}},
      {{"--repeats", "0"}, {"--repeats", "0 is out of range", "1..1000"}},
      {{"--size-mb", "8"}, {"--size-mb", "8 is out of range", "beyond the caches"}},
      {{"--matrix", "10"}, {"--matrix", "10 is out of range"}},
      {{"--matrix", "100000"}, {"--matrix", "64..8192"}},
      {{"--kernels", "maybe"}, {"--kernels", "unknown value 'maybe'", "auto, on or off"}},
      {{"--kernel-mb", "0"}, {"--kernel-mb", "0 is out of range"}},
      // --kernels on without a driver fails before any timing.
      {{"--kernels", "on"}, {"--kernels", "lifeline-llama is not in this build", "setup.sh --with-llama-cpp"}},
  };
  for (const auto& c : cases) {
    const ProcessResult r = Probe(c.args);
    std::string args;
    for (const auto& a : c.args) args += a + " ";
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find("error: lifeline probe: key '"), std::string::npos) << args << "\n" << r.out;
    for (const auto& f : c.fragments) EXPECT_NE(r.out.find(f), std::string::npos) << args << ": " << f << "\n" << r.out;
  }
  // The thread cap names this machine's count.
  const ProcessResult r = Probe({"--threads", std::to_string(4 * hw + 1)});
  EXPECT_NE(r.out.find("1.." + std::to_string(4 * hw)), std::string::npos) << r.out;
  // A non-number is CLI11's error.
  EXPECT_NE(Probe({"--repeats", "many"}).status, 0);
}

}  // namespace
}  // namespace lifeline
