// Memory footprint and capacity: weights + KV cache + workspace by hand, the
// infeasible point, and `lifeline explain --format json`'s summary against the
// evaluator.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <cmath>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"
#include "tests/whatif/test_util.hpp"

namespace lifeline {
namespace {

// meta-llama/Llama-2-7b-hf config.json.
constexpr const char* kLlama2_7b =
    "model_type: llama\nhidden_size: 4096\nintermediate_size: 11008\nnum_hidden_layers: 32\n"
    "num_attention_heads: 32\nnum_key_value_heads: 32\nhead_dim: 128\nvocab_size: 32000\n"
    "tie_word_embeddings: false\nmax_position_embeddings: 4096\nrms_norm_eps: 1.0e-5\n";

ModelArch Llama2_7b() { return ParseModelArch(YAML::Load(kLlama2_7b), "llama-2-7b.yaml", "llama-2-7b"); }

ModelGraph DecodeGraph(const ModelArch& arch, const std::string& plan, int64_t batch) {
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  b.batch = batch;
  return BuildModelGraph(arch, PresetPlan(plan, arch), b);
}

TEST(Footprint, Llama2_7bBf16AtBatch1And4kIsWeightsPlusKvByHand) {
  const ModelArch arch = Llama2_7b();
  const Footprint f = ComputeFootprint(DecodeGraph(arch, "bf16", 1), 4096);
  // Parameters: embedding + LM head (untied), 32 x (q, k, v, o + gate, up, down + two norms), final norm.
  const double h = 4096, i = 11008, v = 32000, layers = 32;
  const double params = 2 * v * h + layers * (4 * h * h + 3 * h * i + 2 * h) + h;
  EXPECT_DOUBLE_EQ(params, 6738415616.0);  // the published 6.74 B
  EXPECT_DOUBLE_EQ(f.weight_bytes, 2 * params);
  // KV: 32 layers x (K + V) x 32 heads x 128 x 4096 tokens x 2 bytes (BF16) x batch 1.
  const double kv = layers * 2 * 32 * 128 * 4096 * 2.0;
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes, kv);
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes_per_token, layers * 2 * 32 * 128 * 2.0);
  // Workspace: the largest operator's activations, the LM head's input row and logits.
  EXPECT_DOUBLE_EQ(f.activation_workspace_bytes, h * 2 + v * 2);
  EXPECT_DOUBLE_EQ(f.total_bytes, 2 * params + kv + h * 2 + v * 2);
  EXPECT_TRUE(FitsDevice(f, ResolveDeviceSpec("nvidia_a100_80gb")));
}

TEST(Footprint, WeightsDoNotGrowWithBatchAndKvDoesLinearly) {
  const ModelArch arch = Llama2_7b();
  const Footprint f1 = ComputeFootprint(DecodeGraph(arch, "w4", 1), 4096);
  const Footprint f8 = ComputeFootprint(DecodeGraph(arch, "w4", 8), 4096);
  EXPECT_DOUBLE_EQ(f1.weight_bytes, f8.weight_bytes);
  EXPECT_DOUBLE_EQ(f8.kv_cache_bytes, 8 * f1.kv_cache_bytes);
  // W4 g128: every linear at 4/8 + (2 + 4/8)/128 bytes per weight; the embedding and norms stay BF16.
  const double h = 4096, i = 11008, v = 32000, layers = 32;
  const double linear = layers * (4 * h * h + 3 * h * i) + v * h;
  const double bf16 = v * h + layers * 2 * h + h;
  const double hand = linear * (0.5 + 2.5 / 128) + 2 * bf16;
  EXPECT_NEAR(f1.weight_bytes, hand, 1e-12 * hand);
}

TEST(Footprint, Batch256At4kDoesNotFitAnA100WithTheNumbersInTheMessage) {
  const ModelArch arch = Llama2_7b();
  const DeviceSpec a100 = ResolveDeviceSpec("nvidia_a100_80gb");
  const Footprint f = ComputeFootprint(DecodeGraph(arch, "bf16", 256), 4096);
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes, 256.0 * 32 * 2 * 32 * 128 * 4096 * 2);  // 549.8 GB
  EXPECT_FALSE(FitsDevice(f, a100));
  const std::string m = DescribeFootprint(f, a100);
  for (const char* s : {"needs 563.", "weights 13.477 GB", "KV cache 549.756 GB at 4096 tokens x batch 256",
                        "but nvidia_a100_80gb has 80.000 GB (memory_capacity_gb)"}) {
    EXPECT_NE(m.find(s), std::string::npos) << s << " in " << m;
  }
}

TEST(Footprint, MoeHoldsEveryExpertAndSlidingLayersOnlyTheirWindow) {
  const ModelArch arch = ResolveModelArch("gpt-oss-20b");
  ASSERT_TRUE(arch.IsMoe());
  ASSERT_GT(arch.sliding_window, 0);
  const ModelGraph g = DecodeGraph(arch, "bf16", 1);
  const Footprint f = ComputeFootprint(g, 8192);
  // Stored: more than one step reads (only the selected experts), whatever the context.
  const GraphTotals read = SumGraph(g, 8192);
  EXPECT_GT(f.weight_bytes, 2.5 * (read.weight_bytes + read.weight_meta_bytes));
  // KV by hand: each layer keeps 8192 tokens, or the window on sliding layers.
  const double per_token_layer = 2.0 * static_cast<double>(arch.num_key_value_heads * arch.head_dim) * 2;
  double kv = 0;
  for (int64_t l = 0; l < arch.num_hidden_layers; ++l) {
    kv += per_token_layer *
          static_cast<double>(arch.LayerAttention(l) == AttentionKind::kSliding ? arch.sliding_window : 8192);
  }
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes, kv);
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes_per_token, per_token_layer * static_cast<double>(arch.num_hidden_layers));
}

TEST(Footprint, Bf16WeightsAreTwoBytesPerParameterOfEveryZooModel) {
  // The graph's stored weights and the architecture's parameter count are
  // computed separately; they must agree (RoPE tables hold no parameters).
  for (const auto& e : std::filesystem::directory_iterator(DefaultModelZooDir())) {
    if (e.path().extension() != ".yaml") continue;
    const ModelArch arch = ResolveModelArch(e.path().string());
    SCOPED_TRACE(arch.name);
    const Footprint f = ComputeFootprint(DecodeGraph(arch, "bf16", 1), 1024);
    const double params = static_cast<double>(arch.TotalParameterCount());
    EXPECT_NEAR(f.weight_bytes, 2 * params, 1e-3 * 2 * params);
  }
}

TEST(Footprint, PrefillHoldsThePrompt) {
  const ModelArch arch = Llama2_7b();
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  b.phase = Phase::kPrefill;
  b.prompt_tokens = 1000;
  b.batch = 2;
  const Footprint f = ComputeFootprint(BuildModelGraph(arch, PresetPlan("bf16", arch), b), 4096);
  EXPECT_EQ(f.cached_tokens, 1000);
  EXPECT_DOUBLE_EQ(f.kv_cache_bytes, 2 * 1000 * 32 * 2 * 32 * 128 * 2.0);
}

using testing::Exec;
using testing::ExecResult;

std::string Llama2File() {
  const auto path = std::filesystem::temp_directory_path() / "lifeline_footprint_llama-2-7b.yaml";
  std::ofstream(path) << kLlama2_7b;
  return path.string();
}

TEST(ExplainFootprint, InfeasibleExitsThreeWithTheNumbersUnlessAllowed) {
  const std::string args = "explain --model " + Llama2File() +
                           " --device nvidia_a100_80gb --plan bf16 --fidelity exact --context 4096 --batch 256";
  const ExecResult r = Exec(args);
  EXPECT_EQ(r.status, 3) << r.output;
  for (const char* s : {"infeasible", "KV cache 549.756 GB", "nvidia_a100_80gb has 80.000 GB", "--allow-infeasible"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " in " << r.output;
  }
  const ExecResult j = Exec(args + " --allow-infeasible --format json", false);
  ASSERT_EQ(j.status, 0) << j.output;
  const auto s = nlohmann::json::parse(j.output).at("summary");
  EXPECT_FALSE(s.at("fits").get<bool>());
  EXPECT_GT(s.at("footprint_bytes").get<double>(), 80e9);
}

TEST(ExplainFootprint, JsonSummaryMatchesTheEvaluator) {
  const ExecResult j = Exec(
      "explain --model qwen3-4b --device nvidia_a100_80gb --plan w4 --fidelity exact --context 8192 --batch 4 "
      "--format json", false);
  ASSERT_EQ(j.status, 0) << j.output;
  const auto s = nlohmann::ordered_json::parse(j.output).at("summary");  // keys in the order written
  const std::vector<std::string> keys = {"fidelity", "total_params", "active_params", "weight_bytes",
                                         "kv_cache_bytes_per_token", "kv_read_bytes", "footprint_bytes", "fits",
                                         "tps", "tpot_s"};
  std::vector<std::string> got;
  for (auto it = s.begin(); it != s.end(); ++it) got.push_back(it.key());
  EXPECT_EQ(got, keys);  // decode: no ttft_s
  const ModelArch arch = ResolveModelArch("qwen3-4b");
  const DeviceSpec dev = ResolveDeviceSpec("nvidia_a100_80gb");
  const ModelGraph g = DecodeGraph(arch, "w4", 4);
  const StepResult r = EvaluateStep(g, dev, 8192);
  const Footprint f = ComputeFootprint(g, 8192);
  EXPECT_EQ(s.at("fidelity"), "exact");
  EXPECT_EQ(s.at("total_params").get<int64_t>(), arch.TotalParameterCount());
  EXPECT_EQ(s.at("active_params").get<int64_t>(), arch.ActiveParameterCount());
  EXPECT_DOUBLE_EQ(s.at("weight_bytes").get<double>(), f.weight_bytes);
  EXPECT_DOUBLE_EQ(s.at("kv_cache_bytes_per_token").get<double>(), f.kv_cache_bytes_per_token);
  EXPECT_DOUBLE_EQ(s.at("kv_read_bytes").get<double>(), SumGraph(g, 8192).kv_read_bytes);
  EXPECT_DOUBLE_EQ(s.at("footprint_bytes").get<double>(), f.total_bytes);
  EXPECT_TRUE(s.at("fits").get<bool>());
  EXPECT_DOUBLE_EQ(s.at("tpot_s").get<double>(), r.total_s);
  EXPECT_DOUBLE_EQ(s.at("tps").get<double>(), 1.0 / r.total_s);
  // Prefill adds its TTFT; tps stays the decode step's at --context.
  const ExecResult p = Exec(
      "explain --model qwen3-4b --device nvidia_a100_80gb --plan w4 --fidelity exact --context 8192 --batch 4 "
      "--phase prefill --prompt 512 --format json", false);
  ASSERT_EQ(p.status, 0) << p.output;
  const auto sp = nlohmann::json::parse(p.output).at("summary");
  BuildOptions b;
  b.fidelity = Fidelity::kExact;
  b.batch = 4;
  b.phase = Phase::kPrefill;
  b.prompt_tokens = 512;
  EXPECT_DOUBLE_EQ(sp.at("ttft_s").get<double>(),
                   EvaluateStep(BuildModelGraph(arch, PresetPlan("w4", arch), b), dev, 8192).total_s);
  EXPECT_DOUBLE_EQ(sp.at("tpot_s").get<double>(), r.total_s);
}

TEST(WhatifFootprint, SweepKeepsInfeasibleRowsAndMarksThem) {
  const ExecResult r = Exec("whatif --model " + Llama2File() +
                                " --device nvidia_a100_80gb --plan bf16 --set fidelity=exact --sweep batch=1,256 "
                                "--sweep context=4096 --format csv",
                            false);
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream in(r.output);
  std::string header, one, big;
  std::getline(in, header);
  std::getline(in, one);
  std::getline(in, big);
  EXPECT_EQ(header.substr(header.size() - std::string(",footprint_bytes,fits").size()), ",footprint_bytes,fits");
  auto last = [](const std::string& line, int back) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    return f[f.size() - 1 - static_cast<size_t>(back)];
  };
  EXPECT_EQ(last(one, 0), "true");
  EXPECT_EQ(last(big, 0), "false");
  const ModelArch arch = Llama2_7b();
  EXPECT_DOUBLE_EQ(std::stod(last(big, 1)), std::round(ComputeFootprint(DecodeGraph(arch, "bf16", 256), 4096).total_bytes));
  EXPECT_DOUBLE_EQ(std::stod(last(one, 1)), std::round(ComputeFootprint(DecodeGraph(arch, "bf16", 1), 4096).total_bytes));
}

}  // namespace
}  // namespace lifeline
