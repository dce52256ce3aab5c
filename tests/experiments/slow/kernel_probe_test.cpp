// ggml kernel rates through the llama.cpp driver (`lifeline-llama kernels`,
// experiments/measure/kernel_probe.cpp), and `lifeline probe` turning them into
// the device spec's efficiencies and overhead. Built only with llama.cpp.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "experiments/measure/llama_runner.hpp"
#include "common/subprocess.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {
namespace {

const char* const kFormats[] = {"f32", "f16", "q8_0", "q4_0", "q4_k", "q3_k", "q2_k"};

// The driver this build made (the runner looks beside the running executable,
// which for a test binary is not the build root).
class KernelProbe : public ::testing::Test {
 protected:
  void SetUp() override { setenv("LIFELINE_LLAMA_DRIVER", LIFELINE_LLAMA_BINARY, 1); }
  void TearDown() override { unsetenv("LIFELINE_LLAMA_DRIVER"); }
};

TEST_F(KernelProbe, EveryFormatHasARateAndBytesFollowTheStorageFormat) {
  const nlohmann::json j = measure::RunLlamaDriver({"kernels", "--reps", "1"});
  ASSERT_TRUE(j.contains("matvec")) << j.dump(1);
  std::set<std::string> seen;
  for (const auto& m : j.at("matvec")) {
    const std::string t = m.at("type").get<std::string>();
    seen.insert(t);
    EXPECT_GT(m.at("weights_per_s").get<double>(), 0) << t;
    EXPECT_DOUBLE_EQ(m.at("flops_per_s").get<double>(), 2 * m.at("weights_per_s").get<double>()) << t;
    EXPECT_GT(m.at("bytes_per_s").get<double>(), 0) << t;
    EXPECT_GE(m.at("k").get<int64_t>(), 2048) << t;
    EXPECT_GT(m.at("n").get<int64_t>(), 0) << t;
    if (t == "q4_0") {
      // Q4_0: blocks of 32 weights in 18 bytes (fp16 scale + 16 bytes of nibbles).
      const double want = m.at("weights_per_s").get<double>() * 18.0 / 32.0;
      const double got = m.at("bytes_per_s").get<double>();
      EXPECT_LT(std::abs(got - want) / want, 1e-6) << "q4_0 bytes_per_s " << got << " vs " << want;
    }
  }
  for (const char* f : kFormats) EXPECT_TRUE(seen.count(f)) << "no matvec rate for " << f;
  EXPECT_GT(j.at("op_overhead_s").get<double>(), 0);
  EXPECT_LT(j.at("op_overhead_s").get<double>(), 1e-3) << "a 64-float add should not take a millisecond";
  EXPECT_GT(j.at("attention").at("s_per_head_token").get<double>(), 0);
  EXPECT_NE(j.at("ggml_system_info").get<std::string>().find("CPU"), std::string::npos);
}

TEST_F(KernelProbe, ProbeWritesMeasuredDispatchOverheadAndEfficiencies) {
  const auto yaml = std::filesystem::temp_directory_path() / ("lifeline_kprobe_" + std::to_string(getpid()) + ".yaml");
  const ProcessResult r = RunProcess({LIFELINE_BINARY, "probe", "--size-mb", "16", "--matrix", "256", "--repeats", "1",
                                      "--kernel-mb", "16", "--kernels", "on", "--write", yaml.string()},
                                     true);
  ASSERT_EQ(r.status, 0) << r.out;
  const DeviceSpec d = LoadDeviceSpec(yaml);
  std::filesystem::remove(yaml);
  EXPECT_GT(d.dispatch_overhead_s, 0);
  EXPECT_NE(d.sources.at("overhead.dispatch_s").find("ggml_add"), std::string::npos)
      << d.sources.at("overhead.dispatch_s");
  for (const char* f : kFormats) {
    const std::string key = std::string("efficiency.linear_compute_") + f;
    ASSERT_TRUE(d.sources.count(key)) << key;
    EXPECT_NE(d.sources.at(key).find("ggml_mul_mat"), std::string::npos) << d.sources.at(key);
    const auto lf = ParseLinearFormat(f);
    ASSERT_TRUE(lf) << f;
    EXPECT_TRUE(d.HasLinearComputeEfficiency(*lf)) << key << " not written";
    EXPECT_LE(d.LinearComputeEfficiency(*lf), 1.0) << key;
  }
}

}  // namespace
}  // namespace lifeline
