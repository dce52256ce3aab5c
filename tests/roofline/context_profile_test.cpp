// The context-parametric evaluation (ContextProfile, and whatif sweeps over
// `context`) against the operator-by-operator evaluation at every context.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "roofline/eval/context_profile.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/parallel.hpp"
#include "roofline/whatif/internal.hpp"
#include "roofline/whatif/whatif.hpp"

namespace lifeline {
namespace {

// Contexts around every window of the graph, a regular grid and the limits.
std::vector<int64_t> ContextsFor(const ModelGraph& g) {
  std::set<int64_t> s;
  for (int64_t c = 1; c <= 4000; c += 97) s.insert(c);
  for (int64_t c : {int64_t{4096}, int64_t{32768}, int64_t{131072}, int64_t{1000000}, kMaxContextTokens}) s.insert(c);
  for (auto v : g.order) {
    const int64_t cap = g.graph[v].context_cap;
    if (cap <= 0) continue;
    for (int64_t c : {cap - 2, cap - 1, cap, cap + 1, cap + 2, 3 * cap}) {
      if (c >= 1 && c <= kMaxContextTokens) s.insert(c);
    }
  }
  return {s.begin(), s.end()};
}

void ExpectProfileMatches(const ModelGraph& g, const DeviceSpec& d, const std::string& what) {
  const CompiledGraph c(g);
  ContextProfile p;
  p.Compile(c, d);
  EXPECT_FALSE(p.reference());
  for (int64_t ctx : ContextsFor(g)) {
    const double full = EvaluateStep(g, d, ctx).total_s;
    ASSERT_NEAR(p.StepSeconds(ctx), full, 1e-12 * full) << what << " context " << ctx;
  }
}

// Every model of the zoo (dense, GQA, sliding-window, MoE and whatever else
// it holds), both fidelities and fusions, a bf16 and a quantized plan with a
// narrow KV cache, batch 1 and 4, on a GPU and on Device A.
TEST(ContextProfile, EqualsOperatorByOperatorEvaluationForEveryZooModel) {
  std::vector<std::string> models;
  for (const auto& e : std::filesystem::directory_iterator(ModelZooDir())) {
    if (e.path().extension() == ".yaml") models.push_back(e.path().stem().string());
  }
  ASSERT_GE(models.size(), 5u);
  const DeviceSpec gpu = ResolveDeviceSpec("nvidia_a100_80gb"), dev_a = ResolveDeviceSpec("device_a");
  int graphs = 0, windowed = 0, moe = 0;
  for (const auto& name : models) {
    const ModelArch a = ResolveModelArch(name);
    for (const char* plan_name : {"bf16", "w4w2-gateup"}) {
      QuantPlan plan;
      try {
        plan = ResolveQuantPlan(plan_name, a);
        if (std::string(plan_name) != "bf16") plan.kv_dtype = KvDtype::kInt4;
        for (auto fid : {Fidelity::kPaper, Fidelity::kExact}) {
          for (auto fus : {FusionMode::kPaper, FusionMode::kNone}) {
            BuildOptions o;
            o.fidelity = fid;
            o.fusion = fus;
            o.batch = fus == FusionMode::kNone ? 4 : 1;
            const ModelGraph g = BuildModelGraph(a, plan, o);
            const std::string what = name + " / " + plan_name + " / " + FidelityName(fid) + " / " + FusionModeName(fus);
            ExpectProfileMatches(g, fid == Fidelity::kExact ? gpu : dev_a, what);
            ++graphs;
            for (auto v : g.order) {
              if (g.graph[v].context_cap > 0) {
                ++windowed;
                break;
              }
            }
            moe += a.IsMoe() ? 1 : 0;
          }
        }
      } catch (const ConfigError& e) {
        // A preset whose group size does not divide this model's linears.
        EXPECT_NE(std::string(plan_name), "bf16") << name << ": " << e.what();
      }
    }
  }
  EXPECT_GE(graphs, static_cast<int>(models.size()) * 4);
  EXPECT_GT(windowed, 0);  // gpt-oss-20b exact: sliding layers
  EXPECT_GT(moe, 0);
}

// Attached LoRA adapters, an fp8 KV cache, batch 8 and tensor-parallel shards
// (each device's graph) of dense, MoE, sliding-window and MLA models.
TEST(ContextProfile, EqualsOperatorByOperatorEvaluationWithAdaptersFp8KvAndShards) {
  const DeviceSpec d = ResolveDeviceSpec("nvidia_h100_sxm");
  int graphs = 0;
  for (const char* name : {"llama-3.1-8b", "gpt-oss-20b", "gemma-2-9b", "deepseek-v2-lite", "mixtral-8x7b"}) {
    const ModelArch full = ResolveModelArch(name);
    for (int64_t tp : {1, 2}) {
      const ModelArch a = tp == 1 ? full : ShardArch(full, tp, "--tp");
      const std::string adapters = full.IsMoe()
                                       ? "adapters: [{pattern: \"*.attn.o_proj\", rank: 16, dtype: f32}]\n"
                                       : "adapters: [{pattern: \"*.mlp.gate_proj\", rank: 32}, "
                                         "{pattern: \"*.attn.o_proj\", rank: 16, dtype: f32}]\n";
      QuantPlan plan = ParseQuantPlan(
          YAML::Load("name: w4-lora\nkv_cache_dtype: fp8\nrules: [{pattern: \"*\", bits: 4, group_size: 64}]\n" +
                     adapters),
          "test plan", "w4-lora");
      BuildOptions o;
      o.fidelity = Fidelity::kExact;
      o.batch = 8;
      ModelGraph g;
      try {
        g = BuildModelGraph(a, plan, o);
      } catch (const ConfigError&) {
        // Group size 64 does not divide every shard; the bf16 plan with the same adapters does.
        plan.rules.clear();
        g = BuildModelGraph(a, plan, o);
      }
      ExpectProfileMatches(g, d, std::string(name) + " tp " + std::to_string(tp));
      ++graphs;
    }
  }
  EXPECT_EQ(graphs, 10);
}

TEST(ContextProfile, PrefillIsOneConstantEqualToTheStep) {
  const ModelArch a = ResolveModelArch("qwen3-4b");
  BuildOptions o;
  o.phase = Phase::kPrefill;
  o.prompt_tokens = 2048;
  const ModelGraph g = BuildModelGraph(a, ResolveQuantPlan("w4", a), o);
  const DeviceSpec d = ResolveDeviceSpec("device_b");
  ContextProfile p;
  p.Compile(CompiledGraph(g), d);
  EXPECT_EQ(p.ContextTermCount(), 0u);
  const double full = EvaluateStep(g, d, 0).total_s;
  for (int64_t ctx : {1, 4096, 100000}) EXPECT_NEAR(p.StepSeconds(ctx), full, 1e-12 * full);
}

TEST(ContextProfile, OnlyContextTermsAreLeftPerContext) {
  const ModelArch a = ResolveModelArch("gpt-oss-20b");
  BuildOptions o;
  o.fidelity = Fidelity::kExact;
  const ModelGraph g = BuildModelGraph(a, ResolveQuantPlan("w4", a), o);
  const CompiledGraph c(g);
  ContextProfile p;
  p.Compile(c, ResolveDeviceSpec("device_a"));
  // Fused attention on full and on sliding layers (the only ops reading the cache).
  EXPECT_EQ(p.ContextTermCount(), 2u);
  EXPECT_LT(p.ContextTermCount(), c.TermCount());
  // The probes straddle the 128-token window.
  const auto probes = ProbeContexts(g, {5, 70000});
  for (int64_t c : {1, 127, 128, 129, 256, 5, 70000}) {
    EXPECT_NE(std::find(probes.begin(), probes.end(), c), probes.end()) << c;
  }
}

TEST(ContextProfile, CompiledFormThatDiffersFallsBackToTheReference) {
  // A compiled graph checked against another graph stands for one whose ops
  // the compiled form does not express: the check says where, and the
  // reference mode gives the operator-by-operator times.
  const ModelArch a = ResolveModelArch("qwen3-4b");
  const ModelGraph w4 = BuildModelGraph(a, ResolveQuantPlan("w4", a), BuildOptions{});
  const ModelGraph w2 = BuildModelGraph(a, ResolveQuantPlan("w2", a), BuildOptions{});
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  std::string why;
  EXPECT_TRUE(CompiledMatchesReference(w4, CompiledGraph(w4), d, ProbeContexts(w4, {}), &why)) << why;
  EXPECT_FALSE(CompiledMatchesReference(w2, CompiledGraph(w4), d, ProbeContexts(w2, {}), &why));
  EXPECT_NE(why.find("at context 1 "), std::string::npos) << why;
  ContextProfile p;
  p.UseReference(w2, d);
  EXPECT_TRUE(p.reference());
  for (int64_t ctx : {1, 4096}) EXPECT_EQ(p.StepSeconds(ctx), EvaluateStep(w2, d, ctx).total_s);
}

namespace wi = whatif;

// A sweep over context (with a device axis) against each point evaluated on
// its own: TPS, TTFT, elasticities, Gain% and Capture% operator by operator.
void ExpectSweepMatchesPerPoint(const wi::RunSpec& run, const std::vector<wi::SweepAxis>& axes) {
  const wi::Scenario sc(run);
  const wi::SweepOptions so{"w4", "w2"};
  uint64_t rows = 0;
  wi::RunSweep(sc, {}, axes, so, [&](const std::vector<size_t>& idx, const wi::SweepMetrics& m) {
    std::vector<wi::Override> ov;
    for (size_t i = 0; i < axes.size(); ++i) ov.push_back(wi::ParseSetArg(axes[i].key + "=" + axes[i].values[idx[i]]));
    wi::Setting s = sc.Resolve(ov);
    const ModelGraph g = BuildModelGraph(s.arch, s.plan, s.decode);
    auto step = [&](const ModelGraph& graph, const DeviceSpec& d) { return EvaluateStep(graph, d, s.context).total_s; };
    const double tpot = step(g, s.device);
    ASSERT_NEAR(m.tpot_s, tpot, 1e-12 * tpot) << s.context;
    EXPECT_NEAR(m.ttft_s, EvaluateStep(BuildModelGraph(s.arch, s.plan, s.prefill), s.device, 0).total_s,
                1e-12 * m.ttft_s);
    DeviceSpec w = s.device;
    const double bw = w.memory_bandwidth_bytes_per_s;
    w.memory_bandwidth_bytes_per_s = bw * (1 + wi::internal::kElasticStep);
    const double up = 1 / step(g, w);
    w.memory_bandwidth_bytes_per_s = bw * (1 - wi::internal::kElasticStep);
    const double down = 1 / step(g, w);
    EXPECT_NEAR(m.elasticity_bandwidth, wi::internal::ElasticFromValues(up, down), 1e-9) << s.context;
    QuantPlan base = ResolveQuantPlan("w4", s.arch), ceil = ResolveQuantPlan("w2", s.arch);
    base.kv_dtype = ceil.kv_dtype = s.plan.kv_dtype;
    const double tps_base = 1 / step(BuildModelGraph(s.arch, base, s.decode), s.device);
    EXPECT_NEAR(m.tps_baseline, tps_base, 1e-12 * tps_base) << s.context;
    const double tps_ceil = 1 / step(BuildModelGraph(s.arch, ceil, s.decode), s.device);
    EXPECT_NEAR(m.capture_pct, (1 / tpot - tps_base) / (tps_ceil - tps_base) * 100, 1e-8) << s.context;
    ++rows;
  });
  EXPECT_EQ(rows, wi::GridSize(axes));
}

TEST(ContextSweep, EqualsPerPointEvaluationDenseAndWindowed) {
  wi::RunSpec dense;  // qwen3-4b, device_a, w4w2-gateup, paper fidelity
  ExpectSweepMatchesPerPoint(dense, {wi::ParseSweepArg("memory_bandwidth_gb_per_s=100,400"),
                                     wi::ParseSweepArg("context=4:4000:333")});
  wi::RunSpec windowed;
  windowed.model = "gpt-oss-20b";
  windowed.fidelity = "exact";
  windowed.device = "nvidia_a100_80gb";
  // Context first: the device values change at every point.
  ExpectSweepMatchesPerPoint(windowed, {wi::ParseSweepArg("context=1,127,128,129,130,5000"),
                                        wi::ParseSweepArg("int8_tops=100,600")});
}

std::string SweepError(const std::string& axis) {
  try {
    wi::RunSweep(wi::Scenario(wi::RunSpec{}), {}, {wi::ParseSweepArg(axis)}, {}, [](auto&, auto&) {});
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ContextSweep, BadContextValuesNameTheArgumentAndTheValue) {
  for (const char* bad : {"context=0,4096", "context=4096,1.5", "context=4096,-3", "context=4096,99999999",
                          "context=4096,4k"}) {
    const std::string e = SweepError(bad);
    EXPECT_NE(e.find(std::string("--sweep ") + bad), std::string::npos) << e;
    EXPECT_NE(e.find("context"), std::string::npos) << e;
  }
  EXPECT_NE(SweepError("context=4096,99999999").find("16777216"), std::string::npos);
  EXPECT_NE(SweepError("context=1.5").find("positive integer"), std::string::npos);
  EXPECT_EQ(SweepError("context=1,16777216,1e3"), "");  // written as the YAML parser reads numbers
}

}  // namespace
}  // namespace lifeline
