// Precision-dependent peaks: peak_tops per datatype in the device YAML, the
// datatype each operator computes in, and the fp8 KV cache.

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

constexpr const char* kDeviceHead =
    "name: t\nint8_tops: 1000\nmemory_bandwidth_gb_per_s: 1000\n"
    "efficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25, moe_expert_compute_int2: 0.5,"
    " moe_expert_compute_int4: 0.5}\n";

DeviceSpec Device(const std::string& peaks) {
  return ParseDeviceSpec(YAML::Load(std::string(kDeviceHead) + peaks), "t.yaml");
}

std::string ErrorOf(const std::string& peaks) {
  try {
    Device(peaks);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(PeakTops, ListedDatatypesHaveTheirPeakInt8IsInt8Tops) {
  const DeviceSpec d = Device("peak_tops: {fp32: 10, bf16: 100, fp16: 100, int4: 2000}\n");
  EXPECT_DOUBLE_EQ(d.PeakOpsPerS(ComputeDtype::kFp32), 10e12);
  EXPECT_DOUBLE_EQ(d.PeakOpsPerS(ComputeDtype::kBf16), 100e12);
  EXPECT_DOUBLE_EQ(d.PeakOpsPerS(ComputeDtype::kInt8), 1000e12);
  EXPECT_DOUBLE_EQ(d.PeakOpsPerS(ComputeDtype::kInt4), 2000e12);
  EXPECT_FALSE(d.HasPeak(ComputeDtype::kFp8));
  try {
    d.PeakOpsPerS(ComputeDtype::kFp8);
    FAIL() << "fp8 has no peak on this device";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("peak_tops.fp8"), std::string::npos) << e.what();
  }
  // Written back and read again: the same peaks.
  const DeviceSpec again = ParseDeviceSpec(YAML::Load(DeviceSpecToYaml(d)), "again.yaml");
  EXPECT_EQ(again.peak_ops_per_s, d.peak_ops_per_s);
  // Without peak_tops every datatype runs at int8_tops.
  const DeviceSpec one = Device("");
  for (int i = 0; i < kComputeDtypeCount; ++i) {
    EXPECT_DOUBLE_EQ(one.PeakOpsPerS(static_cast<ComputeDtype>(i)), 1000e12);
  }
}

TEST(PeakTops, BadKeysAreLocatedErrors) {
  const std::string int8 = ErrorOf("peak_tops: {int8: 5}\n");
  EXPECT_NE(int8.find("t.yaml:"), std::string::npos) << int8;
  EXPECT_NE(int8.find("peak_tops.int8"), std::string::npos) << int8;
  EXPECT_NE(int8.find("int8_tops"), std::string::npos) << int8;
  const std::string typo = ErrorOf("peak_tops: {bf61: 5}\n");
  EXPECT_NE(typo.find("peak_tops.bf61"), std::string::npos) << typo;
  EXPECT_NE(typo.find("did you mean 'bf16'"), std::string::npos) << typo;
  const std::string neg = ErrorOf("peak_tops: {fp8: -1}\n");
  EXPECT_NE(neg.find("peak_tops.fp8"), std::string::npos) << neg;
}

// Seconds of compute of the first operator named `name` (suffix match).
double ComputeSeconds(const ModelGraph& g, const StepResult& r, const std::string& suffix, const OpNode** node) {
  for (size_t i = 0; i < g.order.size(); ++i) {
    const OpNode& n = g.graph[g.order[i]];
    if (n.name.size() >= suffix.size() && n.name.compare(n.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      *node = &n;
      return r.ops[i].compute_s;
    }
  }
  ADD_FAILURE() << "no operator " << suffix;
  return 0;
}

TEST(ComputeDtype, EachOperatorRunsAtThePeakOfItsDatatype) {
  const DeviceSpec d = Device("peak_tops: {fp32: 10, bf16: 100, fp16: 200}\n");
  const ModelArch arch = ResolveModelArch("qwen3-4b");
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  const ModelGraph w4 = BuildModelGraph(arch, PresetPlan("w4", arch), b);
  const StepResult r = EvaluateStep(w4, d, 4096);
  const OpNode* n = nullptr;
  // W4A16: dequantised to BF16, the BF16 peak.
  double s = ComputeSeconds(w4, r, "layers.0.attn.q_proj", &n);
  EXPECT_EQ(ComputeDtypeOf(*n), ComputeDtype::kBf16);
  EXPECT_DOUBLE_EQ(s, n->flops / (0.5 * 100e12));
  // Attention: BF16 at the attention efficiency.
  s = ComputeSeconds(w4, r, "layers.0.attn.attention", &n);
  EXPECT_DOUBLE_EQ(s, n->flops_per_ctx * 4096 / (0.25 * 100e12));
  // Norms: FP32.
  s = ComputeSeconds(w4, r, "layers.0.input_layernorm", &n);
  EXPECT_EQ(ComputeDtypeOf(*n), ComputeDtype::kFp32);
  EXPECT_DOUBLE_EQ(s, n->flops / (0.5 * 10e12));
  // ggml Q4_0: INT8 dot products with Q8 activations; f16: the FP16 peak.
  const ModelGraph q4 = BuildModelGraph(arch, PresetPlan("gguf-w4", arch), b);
  const StepResult rq = EvaluateStep(q4, d, 4096);
  s = ComputeSeconds(q4, rq, "layers.0.mlp.gate_proj", &n);
  EXPECT_EQ(ComputeDtypeOf(*n), ComputeDtype::kInt8);
  EXPECT_DOUBLE_EQ(s, n->flops / (0.5 * 1000e12));
  const ModelGraph f16 = BuildModelGraph(arch, PresetPlan("gguf-f16", arch), b);
  const StepResult rf = EvaluateStep(f16, d, 4096);
  s = ComputeSeconds(f16, rf, "layers.0.mlp.gate_proj", &n);
  EXPECT_DOUBLE_EQ(s, n->flops / (0.5 * 200e12));
  // The compiled graph agrees.
  EXPECT_NEAR(CompiledGraph(w4).StepSeconds(d, 4096), r.total_s, 1e-12 * r.total_s);
}

TEST(ComputeDtype, ADatatypeTheDeviceDoesNotListIsRefused) {
  const DeviceSpec d = Device("peak_tops: {bf16: 100}\n");  // no fp32: the norms cannot run
  const ModelArch arch = ResolveModelArch("qwen3-0.6b");
  const ModelGraph g = BuildModelGraph(arch, PresetPlan("bf16", arch), BuildOptions{});
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0) EvaluateStep(g, d, 1024);
      else CompiledGraph(g).StepSeconds(d, 1024);
      FAIL() << "fp32 has no peak";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("peak_tops.fp32"), std::string::npos) << e.what();
    }
  }
}

TEST(ComputeDtype, ShippedDatacenterGpusListTheirDatasheetPeaks) {
  const DeviceSpec a100 = ResolveDeviceSpec("nvidia_a100_80gb");
  EXPECT_DOUBLE_EQ(a100.PeakOpsPerS(ComputeDtype::kBf16), 312e12);
  EXPECT_FALSE(a100.HasPeak(ComputeDtype::kFp8));  // Ampere has no FP8 units
  const DeviceSpec h100 = ResolveDeviceSpec("nvidia_h100_sxm");
  EXPECT_DOUBLE_EQ(h100.PeakOpsPerS(ComputeDtype::kFp8), 1979e12);
  EXPECT_DOUBLE_EQ(h100.PeakOpsPerS(ComputeDtype::kBf16), 989.5e12);
  // The paper's devices keep one peak.
  EXPECT_FALSE(ResolveDeviceSpec("device_a").HasPeakTable());
  EXPECT_FALSE(ResolveDeviceSpec("device_b").HasPeakTable());
}

TEST(KvCache, Fp8StoresOneBytePerElement) {
  const ModelArch arch = ResolveModelArch("llama-3.1-8b");
  const QuantPlan fp8 = ParseQuantPlan(YAML::Load("kv_cache_dtype: fp8\nrules: [{pattern: '*', bits: 4, group_size: 128}]\n"),
                                       "fp8.yaml", "fp8");
  EXPECT_EQ(KvDtypeName(fp8.kv_dtype), "fp8");
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  const Footprint f = ComputeFootprint(BuildModelGraph(arch, fp8, b), 8192);
  // 32 layers x (K + V) x 8 KV heads x 128 x 1 byte.
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes_per_token, 32.0 * 2 * 8 * 128 * 1);
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes, 32.0 * 2 * 8 * 128 * 8192);
}

}  // namespace
}  // namespace lifeline
