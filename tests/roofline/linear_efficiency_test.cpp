// Per-weight-format compute efficiency of linear operators
// (efficiency.linear_compute_<fmt>): parsing, the evaluator and its folded
// fast path, calibration, what-if keys, and that devices without the keys
// give exactly what they gave before.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "roofline/whatif/whatif.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "roofline/eval/calibration.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

std::vector<std::filesystem::path> YamlFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".yaml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A small-CPU-like device: 100 G ops/s peak, 40 GB/s.
DeviceSpec CpuLike(const std::string& extra_efficiency = "") {
  const std::string yaml =
      "name: cpu_like\n"
      "int8_tops: 0.1\n"
      "memory_bandwidth_gb_per_s: 40\n"
      "efficiency:\n"
      "  memory: 0.8\n"
      "  compute: 0.5\n"
      "  attention_compute: 0.3\n"
      "  moe_expert_compute_int2: 0.2\n"
      "  moe_expert_compute_int4: 0.2\n" +
      extra_efficiency;
  return ParseDeviceSpec(YAML::Load(yaml), "cpu_like.yaml");
}

QuantPlan PlanFromYaml(const std::string& yaml) { return ParseQuantPlan(YAML::Load(yaml), "plan.yaml", "test"); }

// Q4_0 on the MLP, F16 elsewhere.
QuantPlan MlpQ40RestF16() {
  return PlanFromYaml(
      "rules:\n"
      "  - {pattern: '*.mlp.*', format: q4_0}\n"
      "  - {pattern: '*', format: f16}\n");
}

template <typename F>
std::string ConfigErrorOf(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(LinearEfficiency, ParsesDefaultsAndRoundTrips) {
  const DeviceSpec plain = CpuLike();
  for (int i = 0; i < kLinearFormatCount; ++i) {
    const auto f = static_cast<LinearFormat>(i);
    EXPECT_FALSE(plain.HasLinearComputeEfficiency(f)) << LinearFormatName(f);
    EXPECT_EQ(plain.LinearComputeEfficiency(f), plain.compute_efficiency) << LinearFormatName(f);
    EXPECT_EQ(ParseLinearFormat(LinearFormatName(f)), f);
  }
  const DeviceSpec d = CpuLike("  linear_compute_q4_0: 0.1\n  linear_compute_q2_k: 0.07\n  linear_compute_int4: 0.3\n");
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kQ4_0), 0.1);
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kQ2_K), 0.07);
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kInt4), 0.3);
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kF16), 0.5);  // not set: efficiency.compute
  // The writer emits the set keys only, and they parse back.
  const std::string yaml = DeviceSpecToYaml(d);
  EXPECT_NE(yaml.find("  linear_compute_q4_0: 0.1\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  linear_compute_int4: 0.3\n"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("linear_compute_f16"), std::string::npos) << yaml;
  EXPECT_EQ(DeviceSpecToYaml(plain).find("linear_compute"), std::string::npos);
  const DeviceSpec back = ParseDeviceSpec(YAML::Load(yaml), "roundtrip");
  EXPECT_EQ(back.linear_compute_efficiency, d.linear_compute_efficiency);
}

TEST(LinearEfficiency, BadValuesAndUnknownFormatsAreLocated) {
  std::string e = ConfigErrorOf([] { CpuLike("  linear_compute_q4_0: 1.5\n"); });
  EXPECT_NE(e.find("cpu_like.yaml:10:"), std::string::npos) << e;
  EXPECT_NE(e.find("efficiency.linear_compute_q4_0"), std::string::npos) << e;
  EXPECT_NE(e.find("outside (0, 1]"), std::string::npos) << e;
  e = ConfigErrorOf([] { CpuLike("  linear_compute_q4k: 0.3\n"); });
  EXPECT_NE(e.find("cpu_like.yaml:10:"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'linear_compute_q4_k'?"), std::string::npos) << e;
  EXPECT_NE(e.find("q8_0, q4_0, q4_k"), std::string::npos) << e;  // lists the formats
  e = ConfigErrorOf([] { CpuLike("  linear_compute_Q2_K: 0.3\n"); });
  EXPECT_NE(e.find("did you mean 'linear_compute_q2_k'?"), std::string::npos) << e;
  e = ConfigErrorOf([] { CpuLike("  linear_compute_q4_O: 0.3\n"); });
  EXPECT_NE(e.find("did you mean 'linear_compute_q4_0'?"), std::string::npos) << e;
  // A misspelled prefix goes through the map's own did-you-mean.
  e = ConfigErrorOf([] { CpuLike("  linear_comput_q4_0: 0.3\n"); });
  EXPECT_NE(e.find("did you mean 'linear_compute_q4_0'?"), std::string::npos) << e;
}

TEST(LinearEfficiency, GraphRecordsEachLinearsFormat) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const ModelGraph g = BuildModelGraph(a, MlpQ40RestF16(), BuildOptions{});
  int q40 = 0, f16 = 0;
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    if (n.kind != OpKind::kLinear) {
      EXPECT_FALSE(n.linear_format.has_value()) << n.name;
      continue;
    }
    ASSERT_TRUE(n.linear_format.has_value()) << n.name;
    if (n.name.find(".mlp.") != std::string::npos) {
      EXPECT_EQ(*n.linear_format, LinearFormat::kQ4_0) << n.name;
      ++q40;
    } else {
      EXPECT_EQ(*n.linear_format, LinearFormat::kF16) << n.name;
      ++f16;
    }
  }
  EXPECT_EQ(q40, 3 * a.num_hidden_layers);
  EXPECT_EQ(f16, 4 * a.num_hidden_layers + 1);  // q, k, v, o + lm_head
  // Generic plan formats map to BF16 / INTb.
  EXPECT_EQ(LinearFormatOf(WeightFormat{}), LinearFormat::kBf16);
  auto intb = [](int bits) {
    WeightFormat f;
    f.bits = bits;
    f.group_size = 32;
    return LinearFormatOf(f);
  };
  EXPECT_EQ(intb(2), LinearFormat::kInt2);
  EXPECT_EQ(intb(3), LinearFormat::kInt3);
  EXPECT_EQ(intb(4), LinearFormat::kInt4);
  EXPECT_EQ(intb(8), LinearFormat::kInt8);
  EXPECT_EQ(LinearFormatOf(GgmlWeightFormat(GgmlType::kQ2_K)), LinearFormat::kQ2_K);
  EXPECT_EQ(LinearFormatOf(GgmlWeightFormat(GgmlType::kQ3_K)), LinearFormat::kQ3_K);
  EXPECT_EQ(LinearFormatOf(GgmlWeightFormat(GgmlType::kQ4_K)), LinearFormat::kQ4_K);
  EXPECT_EQ(LinearFormatOf(GgmlWeightFormat(GgmlType::kQ8_0)), LinearFormat::kQ8_0);
  EXPECT_EQ(LinearFormatOf(GgmlWeightFormat(GgmlType::kF32)), LinearFormat::kF32);
}

TEST(LinearEfficiency, Q40LinearIsComputeBoundAtItsOwnEfficiency) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const ModelGraph g = BuildModelGraph(a, MlpQ40RestF16(), BuildOptions{});
  const DeviceSpec d = CpuLike("  linear_compute_q4_0: 0.1\n");
  const DeviceSpec plain = CpuLike();
  const StepResult r = EvaluateStep(g, d, 1024);
  const StepResult rp = EvaluateStep(g, plain, 1024);
  int checked = 0;
  for (size_t i = 0; i < g.order.size(); ++i) {
    const OpNode& n = g.graph[g.order[i]];
    const OpTiming& t = r.ops[i];
    SCOPED_TRACE(n.name);
    if (n.kind == OpKind::kLinear && n.name.find(".mlp.") != std::string::npos) {
      EXPECT_DOUBLE_EQ(t.compute_s, t.flops / (0.1 * d.compute_ops_per_s));
      EXPECT_TRUE(t.compute_bound);
      EXPECT_EQ(t.total_s, t.compute_s);  // max(compute, memory), no dispatch overhead here
      ++checked;
    } else if (n.kind == OpKind::kLinear) {
      // F16 linears stay at the general efficiency, as without the key.
      EXPECT_DOUBLE_EQ(t.compute_s, t.flops / (d.compute_efficiency * d.compute_ops_per_s));
      EXPECT_EQ(t.compute_s, rp.ops[i].compute_s);
      EXPECT_EQ(t.total_s, rp.ops[i].total_s);
    } else {
      EXPECT_EQ(t.compute_s, rp.ops[i].compute_s);
      EXPECT_EQ(t.total_s, rp.ops[i].total_s);
    }
  }
  EXPECT_EQ(checked, 3 * a.num_hidden_layers);
  EXPECT_GT(r.total_s, rp.total_s);
}

// The evaluator's arithmetic before per-format efficiencies existed: every
// non-attention op at efficiency.compute.
double ReferenceOpSeconds(const ModelGraph& g, const OpNode& n, const DeviceSpec& d, int64_t ctx, double* compute) {
  const double c = g.options.phase != Phase::kDecode ? 0.0
                   : static_cast<double>(n.context_cap > 0 ? std::min(ctx, n.context_cap) : ctx);
  const double inv_general = 1.0 / (d.compute_efficiency * d.compute_ops_per_s);
  const double inv_attention = 1.0 / (d.attention_compute_efficiency * d.compute_ops_per_s);
  const double inv_unpack = 1.0 / (d.MoeExpertEfficiency(n.expert_unpack_bits) * d.compute_ops_per_s);
  const double inv_memory = 1.0 / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  const double class_flops = n.flops + n.flops_per_ctx * c;
  *compute = class_flops * (n.compute_class == ComputeClass::kAttention ? inv_attention : inv_general) +
             n.expert_unpack_ops * inv_unpack;
  const double bytes = (n.weight_bytes + n.weight_meta_bytes) +
                       (n.act_read_bytes + n.act_write_bytes + (n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx) * c) +
                       (n.kv_read_bytes + n.kv_read_bytes_per_ctx * c + n.kv_write_bytes);
  const double memory = bytes * inv_memory;
  const double overhead = n.dispatches * d.dispatch_overhead_s + n.head_dispatches * d.head_dispatch_overhead_s;
  return (n.charge == Charge::kSum ? *compute + memory : std::max(*compute, memory)) + overhead;
}

TEST(LinearEfficiency, AbsentKeysAreBitIdenticalOnEveryShippedDevice) {
  std::vector<ModelGraph> graphs;
  // (GPT-OSS-20B's 2880-wide rows take no 256-weight k-quant blocks.)
  const std::vector<std::pair<const char*, std::vector<const char*>>> cases = {
      {"qwen3-4b", {"bf16", "w4w2-gateup", "gguf-w4w2-gateup", "gguf-f16"}},
      {"gpt-oss-20b", {"bf16", "w4w2-gateup", "gguf-w4", "gguf-f16"}},
      {"llama-3.2-1b", {"w2", "gguf-w4w2-gateup", "gguf-q8_0"}}};
  for (const auto& [model, plans] : cases) {
    const ModelArch a = ResolveModelArch(model);
    for (const char* plan : plans) graphs.push_back(BuildModelGraph(a, PresetPlan(plan, a), BuildOptions{}));
    BuildOptions pre;
    pre.phase = Phase::kPrefill;
    pre.prompt_tokens = 512;
    graphs.push_back(BuildModelGraph(a, PresetPlan("w4", a), pre));
  }
  int devices = 0, without_keys = 0;
  for (const auto& f : YamlFiles(HwspecDir())) {
    // Devices that set per-format values (nvidia_h200: BF16/F16 at their
    // datasheet peak) are compared with those values taken out.
    DeviceSpec d = LoadDeviceSpec(f);
    SCOPED_TRACE(d.name);
    bool any = false;
    for (int i = 0; i < kLinearFormatCount; ++i) any |= d.HasLinearComputeEfficiency(static_cast<LinearFormat>(i));
    without_keys += any ? 0 : 1;
    d.linear_compute_efficiency.fill(0);
    // One peak (int8_tops) for every datatype, as the reference below computes.
    d.peak_ops_per_s.fill(0);
    ++devices;
    // Every format set explicitly to efficiency.compute changes nothing either.
    DeviceSpec all = d;
    all.linear_compute_efficiency.fill(d.compute_efficiency);
    for (const ModelGraph& g : graphs) {
      const CompiledGraph cg(g);
      for (int64_t ctx : {1, 4096, 32768}) {
        const StepResult r = EvaluateStep(g, d, ctx);
        const StepResult ra = EvaluateStep(g, all, ctx);
        double total = 0, compute_sum = 0;
        for (size_t i = 0; i < g.order.size(); ++i) {
          double compute = 0;
          const double op = ReferenceOpSeconds(g, g.graph[g.order[i]], d, ctx, &compute);
          ASSERT_EQ(r.ops[i].compute_s, compute) << g.graph[g.order[i]].name;
          ASSERT_EQ(r.ops[i].total_s, op) << g.graph[g.order[i]].name;
          ASSERT_EQ(ra.ops[i].total_s, op) << g.graph[g.order[i]].name;
          total += op;
          compute_sum += compute;
        }
        EXPECT_EQ(r.compute_s, compute_sum);
        if (g.options.phase == Phase::kDecode) EXPECT_EQ(r.total_s, total);
        EXPECT_EQ(ra.total_s, r.total_s);
        EXPECT_EQ(cg.StepSeconds(all, ctx), cg.StepSeconds(d, ctx));
        EXPECT_NEAR(cg.StepSeconds(d, ctx), r.total_s, 1e-12 * r.total_s);
      }
    }
  }
  EXPECT_GE(devices, 12);
  EXPECT_GE(without_keys, 10);
}

TEST(LinearEfficiency, CompiledGraphMatchesEvaluateStepWithPerFormatEfficiencies) {
  const DeviceSpec d = CpuLike(
      "  linear_compute_f16: 0.05\n  linear_compute_q4_0: 0.1\n  linear_compute_q2_k: 0.07\n"
      "  linear_compute_int4: 0.2\n  linear_compute_int2: 0.15\n  linear_compute_q8_0: 0.3\n");
  // gate_proj and up_proj have the same shape and bytes: F16 vs BF16 differ only
  // by the efficiency, so the folded graph must not merge them.
  const std::string f16_vs_bf16 =
      "rules:\n"
      "  - {pattern: '*.mlp.*gate_proj', format: f16}\n"
      "  - {pattern: '*.mlp.*up_proj', bits: 16}\n"
      "  - {pattern: '*', format: q8_0}\n";
  for (const char* model : {"qwen3-0.6b", "gpt-oss-20b"}) {
    const ModelArch a = ResolveModelArch(model);
    const bool moe = a.IsMoe();  // GPT-OSS-20B's 2880-wide rows take no k-quant blocks
    std::vector<QuantPlan> plans = {PresetPlan(moe ? "gguf-w4" : "gguf-w4w2-gateup", a), PresetPlan("w4w2-gateup", a),
                                    PresetPlan("gguf-f16", a), PlanFromYaml(f16_vs_bf16)};
    for (const QuantPlan& p : plans) {
      for (Phase phase : {Phase::kDecode, Phase::kPrefill}) {
        BuildOptions b;
        b.phase = phase;
        b.prompt_tokens = phase == Phase::kPrefill ? 300 : 0;
        const ModelGraph g = BuildModelGraph(a, p, b);
        const CompiledGraph cg(g);
        for (int64_t ctx : {1, 777, 8192, 40000}) {
          const double walk = EvaluateStep(g, d, ctx).total_s;
          EXPECT_NEAR(cg.StepSeconds(d, ctx), walk, 1e-12 * walk) << model << " " << p.name << " " << ctx;
        }
      }
    }
  }
  // The F16 vs BF16 plan really changes with the F16 efficiency alone.
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const CompiledGraph cg(BuildModelGraph(a, PlanFromYaml(f16_vs_bf16), BuildOptions{}));
  DeviceSpec slower = d;
  slower.linear_compute_efficiency[static_cast<size_t>(LinearFormat::kF16)] = 0.01;
  EXPECT_GT(cg.StepSeconds(slower, 1024), cg.StepSeconds(d, 1024));
}

TEST(LinearEfficiency, DeviceParamsNameEveryFormat) {
  for (int i = 0; i < kLinearFormatCount; ++i) {
    const auto f = static_cast<LinearFormat>(i);
    const std::string key = std::string("efficiency.linear_compute_") + LinearFormatName(f);
    EXPECT_EQ(ParseDeviceParam(key), LinearComputeParam(f));
    EXPECT_EQ(DeviceParamKey(LinearComputeParam(f)), key);
  }
  // The reference of an unset format reads efficiency.compute, and writing it
  // sets that format only.
  DeviceSpec d = CpuLike();
  EXPECT_EQ(DeviceParamValue(d, ParseDeviceParam("efficiency.linear_compute_q4_0")), 0.5);
  EXPECT_FALSE(d.HasLinearComputeEfficiency(LinearFormat::kQ4_0));
  DeviceParamRef(d, ParseDeviceParam("efficiency.linear_compute_q4_0")) = 0.25;
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kQ4_0), 0.25);
  EXPECT_EQ(d.LinearComputeEfficiency(LinearFormat::kQ2_K), 0.5);
  const std::string e = ConfigErrorOf([] { ParseDeviceParam("efficiency.linear_compute_q4k"); });
  EXPECT_NE(e.find("efficiency.linear_compute_q2_k"), std::string::npos) << e;  // the list
  EXPECT_NE(e.find("did you mean 'efficiency.linear_compute_q4_k'?"), std::string::npos) << e;
}

TEST(LinearEfficiency, CalibrationRecoversPerFormatEfficiencies) {
  // Truth: F16, Q4_0 and Q2_K matrix-vector products compute-bound at their
  // own rates (F16 is compute-bound below 0.32 on this device; the fit starts
  // at efficiency.compute = 0.5, where it is memory-bound, and gets there
  // through the multi-start).
  DeviceSpec truth = CpuLike();
  truth.linear_compute_efficiency[static_cast<size_t>(LinearFormat::kF16)] = 0.2;
  truth.linear_compute_efficiency[static_cast<size_t>(LinearFormat::kQ4_0)] = 0.45;
  truth.linear_compute_efficiency[static_cast<size_t>(LinearFormat::kQ2_K)] = 0.35;
  std::vector<Observation> obs;
  for (const char* model : {"qwen3-0.6b", "llama-3.2-1b"}) {
    const ModelArch a = ResolveModelArch(model);
    for (const char* plan : {"gguf-f16", "gguf-w4", "gguf-w2", "gguf-w4w2-gateup"}) {
      const QuantPlan p = PresetPlan(plan, a);
      const CompiledGraph g(BuildModelGraph(a, p, BuildOptions{}));
      for (int64_t ctx : {256, 1024, 4096}) {
        Observation o;
        o.arch = a;
        o.plan = p;
        o.context_tokens = ctx;
        o.tps = 1.0 / g.StepSeconds(truth, ctx);
        o.where = std::string(model) + "/" + plan;
        obs.push_back(o);
      }
    }
  }
  const std::vector<DeviceParam> params = {ParseDeviceParam("efficiency.linear_compute_f16"),
                                           ParseDeviceParam("efficiency.linear_compute_q4_0"),
                                           ParseDeviceParam("efficiency.linear_compute_q2_k")};
  const ObservationFit f = CalibrateFromObservations(CpuLike(), params, obs);
  EXPECT_NEAR(f.fit.device.LinearComputeEfficiency(LinearFormat::kF16), 0.2, 1e-3);
  EXPECT_NEAR(f.fit.device.LinearComputeEfficiency(LinearFormat::kQ4_0), 0.45, 1e-3);
  EXPECT_NEAR(f.fit.device.LinearComputeEfficiency(LinearFormat::kQ2_K), 0.35, 1e-3);
  EXPECT_LT(f.max_abs_tps, 1e-6);
  // Formats not fitted still follow efficiency.compute.
  EXPECT_FALSE(f.fit.device.HasLinearComputeEfficiency(LinearFormat::kQ8_0));
  // From a probed device (every efficiency 1, where the logistic is flat),
  // with the attention efficiency and a dispatch overhead the probe did not
  // see. F16 is memory-bound here (0.6 > 0.32): fitted but not identifiable.
  // (Validate.CalibratedModeRecoversTheDeviceFromTheTrainingSubset in
  // tests/measure is the case that needs efficiency starts below 1.)
  DeviceSpec probed = CpuLike();
  probed.compute_efficiency = probed.attention_compute_efficiency = 1;
  truth.compute_efficiency = 1;
  truth.linear_compute_efficiency[static_cast<size_t>(LinearFormat::kF16)] = 0.6;
  truth.dispatch_overhead_s = 4e-6;
  for (Observation& o : obs) {
    o.tps = 1.0 / CompiledGraph(BuildModelGraph(o.arch, o.plan, BuildOptions{})).StepSeconds(truth, o.context_tokens);
  }
  // Relative least squares (forecast / measured -> 1), as `lifeline validate`
  // fits: efficiencies -> 0 is a cheap local minimum there (every ratio 0).
  std::vector<CompiledGraph> graphs;
  for (const Observation& o : obs) graphs.emplace_back(BuildModelGraph(o.arch, o.plan, BuildOptions{}));
  const auto ratios = [&](const DeviceSpec& d) {
    std::vector<double> r;
    for (size_t i = 0; i < obs.size(); ++i) r.push_back(1.0 / graphs[i].StepSeconds(d, obs[i].context_tokens) / *obs[i].tps);
    return r;
  };
  const CalibrationResult g = CalibrateDevice(
      probed, {params[0], params[1], params[2], DeviceParam::kAttentionComputeEfficiency, DeviceParam::kDispatchOverhead}, ratios,
      std::vector<double>(obs.size(), 1.0));
  EXPECT_NEAR(g.device.LinearComputeEfficiency(LinearFormat::kQ4_0), 0.45, 1e-3);
  EXPECT_NEAR(g.device.LinearComputeEfficiency(LinearFormat::kQ2_K), 0.35, 1e-3);
  EXPECT_NEAR(g.device.attention_compute_efficiency, 0.3, 1e-3);
  EXPECT_NEAR(g.device.dispatch_overhead_s, 4e-6, 1e-9);
}

TEST(LinearEfficiency, WhatifSetsAndSweepsTheKeys) {
  using namespace whatif;
  const auto keys = KnownKeys();
  for (int i = 0; i < kLinearFormatCount; ++i) {
    const std::string key = std::string("efficiency.linear_compute_") + LinearFormatName(static_cast<LinearFormat>(i));
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
  RunSpec run;
  run.model = "qwen3-0.6b";
  run.plan = "gguf-w4";
  const Scenario sc(run);
  const Setting base = sc.Resolve({});
  // The preset's ggml layout survives the scenario's plan YAML.
  EXPECT_EQ(base.plan.rules.at(0).format.ggml, GgmlType::kQ4_0);
  const Setting s = sc.Resolve({ParseSetArg("efficiency.linear_compute_q4_0=0.001")});
  EXPECT_EQ(s.device.LinearComputeEfficiency(LinearFormat::kQ4_0), 0.001);
  EXPECT_FALSE(base.device.HasLinearComputeEfficiency(LinearFormat::kQ4_0));
  EXPECT_LT(Analyze(s).tps, Analyze(base).tps);
  // A sweep over the key gives what a direct evaluation gives.
  std::vector<double> tps;
  RunSweep(sc, {}, {ParseSweepArg("efficiency.linear_compute_q4_0=0.001,0.002")}, {},
           [&](const std::vector<size_t>& idx, const SweepMetrics& m) {
             const Setting p = sc.Resolve({ParseSetArg(idx[0] == 0 ? "efficiency.linear_compute_q4_0=0.001"
                                                                     : "efficiency.linear_compute_q4_0=0.002")});
             const CompiledGraph g(BuildModelGraph(p.arch, p.plan, p.decode));
             EXPECT_NEAR(m.tps, 1.0 / g.StepSeconds(p.device, p.context), 1e-9 * m.tps);
             tps.push_back(m.tps);
           });
  ASSERT_EQ(tps.size(), 2u);
  EXPECT_GT(tps[1], tps[0]);
  // Sweeping efficiency.compute still moves linears whose format has no value.
  std::vector<double> by_compute;
  RunSweep(sc, {}, {ParseSweepArg("efficiency.compute=0.001,0.002")}, {},
           [&](const std::vector<size_t>&, const SweepMetrics& m) { by_compute.push_back(m.tps); });
  ASSERT_EQ(by_compute.size(), 2u);
  EXPECT_GT(by_compute[1], by_compute[0] * 1.5);
}

}  // namespace
}  // namespace lifeline
