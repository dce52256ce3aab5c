// What-if overrides, sweeps and analysis (library level).

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "experiments/whatif_tables.hpp"
#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "tests/error_of.hpp"

namespace lifeline::whatif {
namespace {

Setting ResolveWith(const std::vector<std::string>& sets, RunSpec run = {}) {
  std::vector<Override> ov;
  for (const auto& s : sets) ov.push_back(ParseSetArg(s));
  return Scenario(run).Resolve(ov);
}

TEST(WhatifSet, DeviceModelPlanAndRunOverridesApply) {
  const Setting s = ResolveWith({"memory_bandwidth_gb_per_s=150", "efficiency.memory=0.7", "model.num_hidden_layers=24",
                                 "plan.kv_cache_dtype=int4", "plan.rules.0.bits=3", "context=8192"});
  EXPECT_DOUBLE_EQ(s.device.memory_bandwidth_bytes_per_s, 150e9);
  EXPECT_DOUBLE_EQ(s.device.memory_efficiency, 0.7);
  EXPECT_EQ(s.arch.num_hidden_layers, 24);
  EXPECT_EQ(s.plan.kv_dtype, KvDtype::kInt4);
  EXPECT_EQ(s.plan.rules.at(0).format.bits, 3);
  EXPECT_EQ(s.context, 8192);
  // The base is untouched by a previous resolve.
  const Setting b = ResolveWith({});
  EXPECT_DOUBLE_EQ(b.device.memory_bandwidth_bytes_per_s, 100e9);
  EXPECT_EQ(b.arch.num_hidden_layers, 36);
}

TEST(WhatifSet, MoreBandwidthIsFasterAndInt4KvHelpsLongContext) {
  const double base = Analyze(ResolveWith({})).tps;
  EXPECT_GT(Analyze(ResolveWith({"memory_bandwidth_gb_per_s=150"})).tps, base * 1.3);
  const double bf16 = Analyze(ResolveWith({"context=32768"})).tps;
  const double int4 = Analyze(ResolveWith({"context=32768", "plan.kv_cache_dtype=int4"})).tps;
  EXPECT_GT(int4, bf16 * 1.2) << bf16 << " " << int4;
}

TEST(WhatifSet, HuggingFaceConfigJsonTakesModelOverrides) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_whatif_hf";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,)"
      << R"("num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"tie_word_embeddings":true})";
  RunSpec r;
  r.model = dir.string();
  const Setting full = ResolveWith({}, r);
  const Setting half = ResolveWith({"model.num_hidden_layers=8"}, r);
  EXPECT_EQ(full.arch.num_hidden_layers, 16);
  EXPECT_EQ(half.arch.num_hidden_layers, 8);
  EXPECT_EQ(half.arch.head_dim, 64);
  EXPECT_TRUE(half.arch.tie_word_embeddings);
  EXPECT_GT(Analyze(half).tps, Analyze(full).tps * 1.4);
}

TEST(WhatifSet, MoeInt4EfficiencyCarriesToInt3AndInt8LikeTheYaml) {
  RunSpec r;
  r.model = "gpt-oss-20b";
  const Setting s = ResolveWith({"efficiency.moe_expert_compute_int4=0.5"}, r);
  EXPECT_DOUBLE_EQ(s.device.moe_expert_compute_int4_efficiency, 0.5);
  EXPECT_DOUBLE_EQ(s.device.moe_expert_compute_int8_efficiency, 0.5);
  EXPECT_DOUBLE_EQ(s.device.moe_expert_compute_int3_efficiency, 0.5);
}

TEST(WhatifSet, BadArgumentsGetClearErrors) {
  std::string e = ErrorOf([] { ParseSetArg("memory_bandwith_gb_per_s=150"); });
  EXPECT_NE(e.find("--set memory_bandwith_gb_per_s=150"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'memory_bandwidth_gb_per_s'"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"memory_bandwidth_gb_per_s=150GB/s"}); });
  EXPECT_NE(e.find("--set memory_bandwidth_gb_per_s=150GB/s"), std::string::npos) << e;
  EXPECT_NE(e.find("not a number"), std::string::npos) << e;
  EXPECT_NE(e.find("write just 150"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"efficiency.memory=80"}); });
  EXPECT_NE(e.find("--set efficiency.memory=80"), std::string::npos) << e;
  EXPECT_NE(e.find("outside (0, 1]"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"int8_tops=-5"}); });
  EXPECT_NE(e.find("must be positive"), std::string::npos) << e;

  e = ErrorOf([] { ParseSetArg("hidden_size=4096"); });
  EXPECT_NE(e.find("did you mean 'model.hidden_size'"), std::string::npos) << e;

  e = ErrorOf([] { ParseSetArg("device.int8_tops=10"); });
  EXPECT_NE(e.find("without a prefix"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"plan.kv_cache_dtype=int3"}); });
  EXPECT_NE(e.find("unknown dtype 'int3'"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"plan.rules.7.bits=2"}); });
  EXPECT_NE(e.find("the plan has 3 rules"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"plan.rules.0.group_size=100"}); });  // does not divide 2560
  EXPECT_NE(e.find("--set plan.rules.0.group_size=100"), std::string::npos) << e;

  e = ErrorOf([] { ResolveWith({"model.num_key_value_heads=7"}); });
  EXPECT_NE(e.find("not divisible"), std::string::npos) << e;

  EXPECT_NE(ErrorOf([] { ParseSetArg("efficiency.memory="); }).find("empty value"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSetArg("efficiency.memory"); }).find("no '='"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ResolveWith({"fusion=full"}); }).find("unknown fusion mode"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ResolveWith({"context=0"}); }).find("positive integer"), std::string::npos);
  RunSpec bad;
  bad.batch = 0;
  EXPECT_NE(ErrorOf([&] { Scenario s(bad); }).find("--batch"), std::string::npos);
}

TEST(WhatifSweep, RangesAndListsParse) {
  SweepAxis a = ParseSweepArg("memory_bandwidth_gb_per_s=50:200:50");
  EXPECT_EQ(a.values, (std::vector<std::string>{"50", "100", "150", "200"}));
  a = ParseSweepArg("efficiency.memory=0.1:0.3:0.1");
  EXPECT_EQ(a.values, (std::vector<std::string>{"0.1", "0.2", "0.3"}));
  a = ParseSweepArg("context=4096:1024:-1024");
  EXPECT_EQ(a.values, (std::vector<std::string>{"4096", "3072", "2048", "1024"}));
  a = ParseSweepArg("plan.kv_cache_dtype=bf16, int8,int4");
  EXPECT_EQ(a.values, (std::vector<std::string>{"bf16", "int8", "int4"}));
}

TEST(WhatifSweep, BadSweepsGetClearErrors) {
  std::string e = ErrorOf([] { ParseSweepArg("memory_bandwidth_gb_per_s=400:50:10"); });
  EXPECT_NE(e.find("--sweep memory_bandwidth_gb_per_s=400:50:10"), std::string::npos) << e;
  EXPECT_NE(e.find("range is empty"), std::string::npos) << e;
  EXPECT_NE(e.find("400:50:-10"), std::string::npos) << e;
  EXPECT_NE(ErrorOf([] { ParseSweepArg("int8_tops=1:10:0"); }).find("step is zero"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSweepArg("int8_tops=1:10"); }).find("not a range"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSweepArg("int8_tops=1TOPS:10:1"); }).find("write just 1"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSweepArg("int8_tops=1,,3"); }).find("empty value in the list"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSweepArg("int8_tops="); }).find("empty value"), std::string::npos);
  EXPECT_NE(ErrorOf([] { ParseSweepArg("contxt=1:4:1"); }).find("did you mean 'context'"), std::string::npos);
  // Values are validated like the YAML, naming the sweep argument and the value.
  const Scenario sc{RunSpec{}};
  e = ErrorOf([&] {
    RunSweep(sc, {}, {ParseSweepArg("efficiency.memory=0.5:1.5:0.5")}, {}, [](auto&, auto&) {});
  });
  EXPECT_NE(e.find("--sweep efficiency.memory=0.5:1.5:0.5 (value '1.5')"), std::string::npos) << e;
  e = ErrorOf([&] {
    RunSweep(sc, {}, {ParseSweepArg("int8_tops=1,2"), ParseSweepArg("int8_tops=3")}, {}, [](auto&, auto&) {});
  });
  EXPECT_NE(e.find("swept twice"), std::string::npos) << e;
}

TEST(WhatifSweep, GridMatchesDirectEvaluationInOrder) {
  const Scenario sc{RunSpec{}};
  const std::vector<SweepAxis> axes = {ParseSweepArg("plan.kv_cache_dtype=bf16,int4"),
                                       ParseSweepArg("memory_bandwidth_gb_per_s=50,100"),
                                       ParseSweepArg("context=1024,8192")};
  EXPECT_EQ(GridSize(axes), 8u);
  std::vector<std::vector<size_t>> seen;
  SweepOptions so{"w4", "w2"};
  RunSweep(sc, {ParseSetArg("efficiency.memory=0.7")}, axes, so,
           [&](const std::vector<size_t>& idx, const SweepMetrics& m) {
             seen.push_back(idx);
             const Setting s = sc.Resolve({ParseSetArg("efficiency.memory=0.7"),
                                           ParseSetArg("plan.kv_cache_dtype=" + axes[0].values[idx[0]]),
                                           ParseSetArg("memory_bandwidth_gb_per_s=" + axes[1].values[idx[1]]),
                                           ParseSetArg("context=" + axes[2].values[idx[2]])});
             const CompiledGraph g(BuildModelGraph(s.arch, s.plan, s.decode));
             EXPECT_NEAR(m.tps, 1.0 / g.StepSeconds(s.device, s.context), 1e-9);
             const PointAnalysis a = Analyze(s);
             EXPECT_NEAR(m.ttft_s, a.ttft_s, 1e-12);
             EXPECT_NEAR(m.elasticity_bandwidth, a.elasticities[0].decode_tps, 1e-6);
             EXPECT_NEAR(m.gain_pct, (m.tps / m.tps_baseline - 1) * 100, 1e-9);
             EXPECT_GT(m.capture_pct, 0);
             EXPECT_LT(m.capture_pct, 100);
           });
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen[0], (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ(seen[1], (std::vector<size_t>{0, 0, 1}));  // last axis fastest
  EXPECT_EQ(seen[7], (std::vector<size_t>{1, 1, 1}));
}

TEST(WhatifAnalysis, ElasticitiesAddUpToTheNonOverheadShare) {
  // Scaling bandwidth and TOPS together scales every compute and memory term:
  // e_bw + e_tops = 1 - overhead / step time.
  for (const char* model : {"qwen3-4b", "gpt-oss-20b"}) {
    RunSpec r;
    r.model = model;
    const Setting s = ResolveWith({}, r);
    const PointAnalysis a = Analyze(s);
    const double sum = a.elasticities[0].decode_tps + a.elasticities[1].decode_tps;
    EXPECT_NEAR(sum, 1.0 - a.decode_overhead_s / a.tpot_s, 2e-4) << model;
  }
  // Dense memory-bound decode: bandwidth dominates.
  const PointAnalysis a = Analyze(ResolveWith({}));
  EXPECT_GT(a.elasticities[0].decode_tps, 0.9);
  EXPECT_LT(a.elasticities[1].decode_tps, 0.01);
  EXPECT_EQ(a.decode_bound, "memory");
}

TEST(WhatifAnalysis, FlipBandwidthIsSolvedExactly) {
  const Setting s = ResolveWith({});
  const PointAnalysis a = Analyze(s);
  ASSERT_TRUE(a.step_flip_bandwidth_gb_per_s);
  // At the solved bandwidth, summed compute equals summed memory time.
  Setting f = s;
  f.device.memory_bandwidth_bytes_per_s = *a.step_flip_bandwidth_gb_per_s * 1e9;
  const PointAnalysis b = Analyze(f);
  EXPECT_NEAR(b.decode_compute_s / b.decode_memory_s, 1.0, 1e-9);
  // Prefill too, and per operator group.
  ASSERT_TRUE(a.prefill_flip_bandwidth_gb_per_s);
  f.device.memory_bandwidth_bytes_per_s = *a.prefill_flip_bandwidth_gb_per_s * 1e9;
  const PointAnalysis c = Analyze(f);
  EXPECT_NEAR(c.prefill_compute_s / c.prefill_memory_s, 1.0, 1e-9);
  const OpGroup& top = a.ops.front();
  ASSERT_TRUE(top.flip_bandwidth_gb_per_s);
  f.device.memory_bandwidth_bytes_per_s = *top.flip_bandwidth_gb_per_s * 1e9;
  for (const auto& g : Analyze(f).ops)
    if (g.name == top.name) EXPECT_NEAR(g.compute_s / g.memory_s, 1.0, 1e-9) << g.name;
}

TEST(WhatifAnalysis, FlipContextIsTheExactBoundary) {
  // Slow attention compute: the step turns compute-bound as the context grows;
  // solved from below (memory-bound now) and from above (compute-bound now).
  for (const char* ctx : {"context=64", "context=8192"}) {
    const Setting s = ResolveWith({"int8_tops=2", "efficiency.attention_compute=0.01", ctx});
    const PointAnalysis a = Analyze(s);
    ASSERT_TRUE(a.step_flip_context_tokens) << ctx;
    const int64_t c = *a.step_flip_context_tokens;
    const ModelGraph g = BuildModelGraph(s.arch, s.plan, s.decode);
    const StepResult before = EvaluateStep(g, s.device, c - 1), at = EvaluateStep(g, s.device, c);
    EXPECT_LE(before.compute_s, before.memory_s) << ctx << " flip " << c;
    EXPECT_GT(at.compute_s, at.memory_s) << ctx << " flip " << c;
    EXPECT_EQ(a.decode_bound, s.context >= c ? "compute" : "memory") << ctx;
    for (const auto& op : a.ops) {
      if (op.name == "layers.*.attn.attention") EXPECT_EQ(op.bound, "compute");
      if (op.name == "layers.*.mlp.down_proj") EXPECT_FALSE(op.flip_context_tokens);  // no context term
    }
  }
}

TEST(WhatifAnalysis, PrefillFlipPromptIsTheExactBoundary) {
  const Setting s = ResolveWith({"prompt=2048"});
  const PointAnalysis a = Analyze(s);
  ASSERT_TRUE(a.prefill_flip_prompt_tokens);
  const int64_t p = *a.prefill_flip_prompt_tokens;
  auto margin = [&](int64_t prompt) {
    BuildOptions b = s.prefill;
    b.prompt_tokens = prompt;
    const StepResult r = EvaluateStep(BuildModelGraph(s.arch, s.plan, b), s.device, 0);
    return r.compute_s - r.memory_s;
  };
  EXPECT_LE(margin(p - 1), 0) << p;  // short prompts read the weights for little work: memory-bound
  EXPECT_GT(margin(p), 0) << p;
  EXPECT_EQ(a.prefill_bound, "compute");
  EXPECT_FALSE(Analyze(s, false).prefill_flip_prompt_tokens);
}

TEST(WhatifAnalysis, DominantOperatorsAreSortedAndSharesSumTo100) {
  const PointAnalysis a = Analyze(ResolveWith({}));
  double share = 0;
  for (size_t i = 0; i < a.ops.size(); ++i) {
    share += a.ops[i].share_pct;
    if (i) EXPECT_GE(a.ops[i - 1].time_s, a.ops[i].time_s);
  }
  EXPECT_NEAR(share, 100.0, 1e-9);
  // Exact fidelity (head_dim 128): at 4096 tokens each layer reads 16.8 MB of
  // KV cache, more than its INT4 down projection's 14 MB.
  EXPECT_EQ(a.ops.front().name, "layers.*.attn.attention");
  EXPECT_NEAR(a.ridge_ops_per_byte, 500.0, 1e-9);  // 50 TOPS / 100 GB/s
  const auto tables = AnalysisTables(a, ResolveWith({}), 5);
  ASSERT_EQ(tables.size(), 3u);
  EXPECT_EQ(tables[2].rows.size(), 5u);
}

}  // namespace
}  // namespace lifeline::whatif
