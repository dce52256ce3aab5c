// Deployment choices: LoRA adapters attached or merged (bytes, FLOPs and
// dispatches by hand), speculative decoding's expected tokens and its
// verification step, chunked prefill against a hand count on a tiny model.

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/whatif/deploy.hpp"
#include "tests/error_of.hpp"

namespace lifeline {
namespace {

const OpNode* Find(const ModelGraph& g, const std::string& name) {
  for (auto v : g.order)
    if (g.graph[v].name == name) return &g.graph[v];
  return nullptr;
}

QuantPlan Plan(const std::string& yaml) { return ParseQuantPlan(LoadYamlString(yaml, "plan.yaml"), "plan.yaml", "p"); }

constexpr const char* kW4Rules = "rules:\n  - {pattern: \"*\", bits: 4, group_size: 128}\n";

TEST(Adapters, AttachedRank32OnGateUpAddsExactlyItsBytesAndFlops) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const QuantPlan plain = Plan(kW4Rules);
  const QuantPlan lora = Plan(std::string(kW4Rules) +
                              "adapters:\n"
                              "  - {pattern: \"*.mlp.gate_proj\", rank: 32}\n"
                              "  - {pattern: \"*.mlp.up_proj\", rank: 32, dtype: bf16, mode: attached}\n");
  for (int64_t batch : {1, 4}) {
    BuildOptions o;
    o.fidelity = Fidelity::kExact;
    o.batch = batch;
    const ModelGraph g0 = BuildModelGraph(a, plain, o), g1 = BuildModelGraph(a, lora, o);
    const GraphTotals t0 = SumGraph(g0, 4096), t1 = SumGraph(g1, 4096);
    const double L = static_cast<double>(a.num_hidden_layers), h = a.hidden_size, i = a.intermediate_size, r = 32;
    const double m = static_cast<double>(batch);
    // Per layer and adapted linear (h -> i): A is h x r, B is r x i, BF16.
    EXPECT_DOUBLE_EQ(t1.weight_bytes - t0.weight_bytes, L * 2 * (h * r + r * i) * 2.0);
    EXPECT_DOUBLE_EQ(t1.weight_meta_bytes, t0.weight_meta_bytes);
    // 2 m r (h + i) multiply-accumulates and B's m i accumulation into the output.
    EXPECT_DOUBLE_EQ(t1.flops - t0.flops, L * 2 * (2 * m * r * (h + i) + m * i));
    EXPECT_DOUBLE_EQ(t1.dispatches - t0.dispatches, L * 4);  // shrink and expand per adapted linear
    const OpNode* A = Find(g1, "layers.3.mlp.up_proj.lora_A");
    const OpNode* B = Find(g1, "layers.3.mlp.up_proj.lora_B");
    ASSERT_NE(A, nullptr);
    ASSERT_NE(B, nullptr);
    EXPECT_EQ(A->k, a.hidden_size);
    EXPECT_EQ(A->n, 32);
    EXPECT_EQ(B->n, a.intermediate_size);
    EXPECT_EQ(A->format, "LoRA r32 bf16");
    EXPECT_EQ(Find(g1, "layers.3.attn.q_proj.lora_A"), nullptr);
    // The cost as whatif/explain report it.
    const AdapterCost c = EvaluateAdapterCost(g1, ResolveDeviceSpec("device_a"), 4096);
    EXPECT_EQ(c.attached_linears, 2 * a.num_hidden_layers);
    EXPECT_DOUBLE_EQ(c.weight_bytes, L * 2 * (h * r + r * i) * 2.0);
    EXPECT_GT(c.tps_cost_pct, 0.0);
    EXPECT_NEAR(c.tps_cost_pct, 100.0 * (1.0 - c.step_s_without / c.step_s), 1e-12);
    EXPECT_TRUE(c.notes.empty());
  }
}

TEST(Adapters, F32AdaptersCountFourBytesPerElement) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const ModelGraph g = BuildModelGraph(
      a, Plan(std::string(kW4Rules) + "adapters: [{pattern: lm_head, rank: 8, dtype: f32}]\n"), BuildOptions{});
  const OpNode* B = Find(g, "lm_head.lora_B");
  ASSERT_NE(B, nullptr);
  EXPECT_DOUBLE_EQ(B->weight_bytes, 8.0 * a.vocab_size * 4.0);
  EXPECT_EQ(B->linear_format, LinearFormat::kF32);
}

TEST(Adapters, MergedAddNothingAndSayWhenTheyRequantize) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  const std::string merged = "adapters: [{pattern: \"*.mlp.*_proj\", rank: 32, mode: merged}]\n";
  const QuantPlan w2 = Plan("rules:\n  - {pattern: \"*gate_proj\", bits: 2, group_size: 32}\n"
                            "  - {pattern: \"*\", bits: 16}\n");
  const QuantPlan w2m = Plan("rules:\n  - {pattern: \"*gate_proj\", bits: 2, group_size: 32}\n"
                             "  - {pattern: \"*\", bits: 16}\n" + merged);
  const ModelGraph g0 = BuildModelGraph(a, w2, BuildOptions{}), g1 = BuildModelGraph(a, w2m, BuildOptions{});
  const GraphTotals t0 = SumGraph(g0, 4096), t1 = SumGraph(g1, 4096);
  EXPECT_EQ(boost::num_vertices(g0.graph), boost::num_vertices(g1.graph));
  EXPECT_DOUBLE_EQ(t0.flops, t1.flops);
  EXPECT_DOUBLE_EQ(t0.weight_bytes, t1.weight_bytes);
  EXPECT_DOUBLE_EQ(t0.act_bytes, t1.act_bytes);
  EXPECT_DOUBLE_EQ(t0.dispatches, t1.dispatches);
  ASSERT_EQ(g1.notes.size(), 1u);
  EXPECT_NE(g1.notes[0].find("re-quantizes W + B A to INT2 g32"), std::string::npos) << g1.notes[0];
  EXPECT_NE(g1.notes[0].find("different model than the one trained"), std::string::npos);
  // Merged into BF16 weights: nothing to say.
  const ModelGraph g2 = BuildModelGraph(a, Plan("rules: [{pattern: \"*\", bits: 16}]\n" + merged), BuildOptions{});
  EXPECT_TRUE(g2.notes.empty());
}

TEST(Adapters, BadInputsAreLocatedErrors) {
  const ModelArch a = ResolveModelArch("qwen3-0.6b");
  // A pattern matching no linear: file:line of the entry, the key and the pattern.
  const QuantPlan none = Plan(std::string(kW4Rules) + "adapters:\n  - {pattern: \"*.mlp.gate\", rank: 8}\n");
  std::string e = ErrorOf([&] { BuildModelGraph(a, none, BuildOptions{}); });
  EXPECT_NE(e.find("plan.yaml:4:5"), std::string::npos) << e;
  EXPECT_NE(e.find("'pattern'"), std::string::npos) << e;
  EXPECT_NE(e.find("'*.mlp.gate' matches no linear"), std::string::npos) << e;
  // Unknown key, bad mode, bad dtype, rank beyond the linear's dimensions.
  e = ErrorOf([&] { Plan(std::string(kW4Rules) + "adapters: [{pattern: lm_head, rank: 8, alpha: 16}]\n"); });
  EXPECT_NE(e.find("adapters[0].alpha"), std::string::npos) << e;
  e = ErrorOf([&] { Plan(std::string(kW4Rules) + "adapters: [{pattern: lm_head, rank: 8, mode: attach}]\n"); });
  EXPECT_NE(e.find("did you mean 'attached'"), std::string::npos) << e;
  e = ErrorOf([&] { Plan(std::string(kW4Rules) + "adapters: [{pattern: lm_head, rank: 8, dtype: int4}]\n"); });
  EXPECT_NE(e.find("adapters[0].dtype"), std::string::npos) << e;
  e = ErrorOf([&] { Plan(std::string(kW4Rules) + "adapters: []\n"); });
  EXPECT_NE(e.find("non-empty list"), std::string::npos) << e;
  const QuantPlan big = Plan(std::string(kW4Rules) + "adapters: [{pattern: \"*.attn.k_proj\", rank: 2048}]\n");
  e = ErrorOf([&] { BuildModelGraph(a, big, BuildOptions{}); });
  EXPECT_NE(e.find("exceeds min(in, out)"), std::string::npos) << e;
  // Routed experts carry no adapters here: refused, not skipped.
  const ModelArch moe = ResolveModelArch("gpt-oss-20b");
  const QuantPlan ex = Plan("rules: [{pattern: \"*\", bits: 4, group_size: 64}]\n"
                            "adapters: [{pattern: \"*gate_proj\", rank: 8}]\n");
  e = ErrorOf([&] { BuildModelGraph(moe, ex, BuildOptions{}); });
  EXPECT_NE(e.find("routed-expert linear"), std::string::npos) << e;
}

TEST(Speculative, ExpectedTokensFollowLeviathan) {
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(4, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(4, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(4, 0.5), (1 - std::pow(0.5, 5)) / 0.5);  // 1.9375
  EXPECT_DOUBLE_EQ(ExpectedTokensPerStep(2, 0.8), 1 + 0.8 + 0.64);
}

TEST(Speculative, FullAcceptanceAndAFreeDraftGiveKPlusOneTokensPerTargetStep) {
  for (int64_t k : {1, 3, 7}) {
    const double verify_s = 0.0125;
    const SpeculativeResult r = SpeculativeFromTimes(k, 1.0, 0.0, verify_s, 0.01);
    EXPECT_DOUBLE_EQ(r.tokens_per_step, static_cast<double>(k + 1));
    EXPECT_DOUBLE_EQ(r.step_s, verify_s);
    EXPECT_DOUBLE_EQ(r.tps, static_cast<double>(k + 1) / verify_s);
    EXPECT_DOUBLE_EQ(r.speedup, r.tps / 100.0);
  }
}

TEST(Speculative, VerifyingOneTokenCostsExactlyOneDecodeStep) {
  // A prefill step of 1 token after context - 1 cached ones, logits at every
  // position, charged per operator, is the decode step at that context; also
  // on sliding-window layers (GPT-OSS exact) below and beyond the window.
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  for (const char* model : {"qwen3-4b", "gpt-oss-20b"}) {
    const ModelArch a = ResolveModelArch(model);
    const QuantPlan p = PresetPlan("w4", a);
    for (auto fusion : {FusionMode::kPaper, FusionMode::kNone}) {
      for (int64_t ctx : {int64_t{1}, int64_t{100}, int64_t{4096}}) {
        BuildOptions dec;
        dec.fidelity = Fidelity::kExact;
        dec.fusion = fusion;
        dec.batch = 2;
        BuildOptions ver = dec;
        ver.phase = Phase::kPrefill;
        ver.prompt_tokens = 1;
        ver.past_tokens = ctx - 1;
        ver.all_logits = true;
        const double step = EvaluateStep(BuildModelGraph(a, p, dec), d, ctx).total_s;
        const StepResult v = EvaluateStep(BuildModelGraph(a, p, ver), d, ctx);
        double sum = 0;
        for (const auto& op : v.ops) sum += op.total_s;
        EXPECT_NEAR(sum, step, 1e-12 * step) << model << " ctx " << ctx;
      }
    }
  }
}

TEST(Speculative, EvaluatedStepAddsDraftsAndVerification) {
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  const ModelArch target = ResolveModelArch("qwen3-8b"), draft = ResolveModelArch("qwen3-0.6b");
  SpeculativeSpec s{draft, PresetPlan("w4", draft), 4, 0.7};
  BuildOptions dec;
  dec.fidelity = Fidelity::kExact;
  const SpeculativeResult r = EvaluateSpeculative(target, PresetPlan("w4", target), s, dec, d, 2048);
  double draft_s = 0;
  const ModelGraph dg = BuildModelGraph(draft, s.draft_plan, dec);
  for (int64_t c = 2048; c < 2052; ++c) draft_s += EvaluateStep(dg, d, c).total_s;
  EXPECT_NEAR(r.draft_s, draft_s, 1e-15);
  EXPECT_DOUBLE_EQ(r.step_s, r.draft_s + r.verify_s);
  EXPECT_DOUBLE_EQ(r.tokens_per_step, ExpectedTokensPerStep(4, 0.7));
  // Five tokens verified in one step cost more than one decode step and less than five.
  const double target_s = 1.0 / r.target_tps;
  EXPECT_GT(r.verify_s, target_s);
  EXPECT_LT(r.verify_s, 5 * target_s);
  // A draft with another vocabulary is refused.
  ModelArch other = draft;
  other.vocab_size = 32000;
  const std::string e = ErrorOf([&] {
    EvaluateSpeculative(target, PresetPlan("w4", target), SpeculativeSpec{other, s.draft_plan, 4, 0.7}, dec, d, 2048);
  });
  EXPECT_NE(e.find("speculative.draft_model"), std::string::npos) << e;
}

TEST(ChunkedPrefill, AttentionPairsAndKvReadsMatchAHandCountOnATinyModel) {
  // stories260k: 5 layers, 8 heads of 8, 4 KV heads, BF16 KV. Prompt 10 in
  // chunks of 4: positions 1-4, 5-8, 9-10, each attending to every earlier one.
  const ModelArch a = ResolveModelArch("stories260k");
  const QuantPlan p = PresetPlan("bf16", a);
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  BuildOptions pre;
  pre.fidelity = Fidelity::kExact;
  pre.phase = Phase::kPrefill;
  pre.prompt_tokens = 10;
  const double ops_per_pair = 8 * (4.0 * 8 + 5);  // heads x (q.k and p.v over head_dim 8, softmax)
  const double kv_bytes_per_position = 2 * 4 * 8 * 2.0;  // K and V, 4 KV heads of 8, BF16
  const double pairs[] = {1 + 2 + 3 + 4, 5 + 6 + 7 + 8, 9 + 10};
  const double positions[] = {4, 8, 10};
  const int64_t sizes[] = {4, 4, 2};
  double sum = 0;
  for (int j = 0; j < 3; ++j) {
    BuildOptions o = pre;
    o.prompt_tokens = sizes[j];
    o.past_tokens = 4 * j;
    const ModelGraph g = BuildModelGraph(a, p, o);
    const OpNode* att = Find(g, "layers.2.attn.attention");
    ASSERT_NE(att, nullptr);
    EXPECT_DOUBLE_EQ(att->flops, pairs[j] * ops_per_pair) << "chunk " << j;
    EXPECT_DOUBLE_EQ(att->kv_read_bytes, positions[j] * kv_bytes_per_position) << "chunk " << j;
    sum += EvaluateStep(g, d, 0).total_s;
  }
  const ChunkedPrefill c = EvaluateChunkedPrefill(a, p, pre, d, 4, "test");
  ASSERT_EQ(c.chunk_s.size(), 3u);
  EXPECT_DOUBLE_EQ(c.ttft_s, sum);
  // Every weight is read once per chunk: three chunks read more than one pass.
  EXPECT_GT(c.ttft_s, c.ttft_unchunked_s);
  // One chunk as large as the prompt is the unchunked prefill.
  const ChunkedPrefill one = EvaluateChunkedPrefill(a, p, pre, d, 10, "test");
  EXPECT_DOUBLE_EQ(one.ttft_s, one.ttft_unchunked_s);
  EXPECT_DOUBLE_EQ(EvaluateChunkedPrefill(a, p, pre, d, 64, "test").ttft_s, one.ttft_unchunked_s);
  // Too many chunks: refused with the limit.
  pre.prompt_tokens = 100000;
  const std::string e = ErrorOf([&] { EvaluateChunkedPrefill(a, p, pre, d, 1, "--set prefill_chunk_tokens=1"); });
  EXPECT_NE(e.find("--set prefill_chunk_tokens=1"), std::string::npos) << e;
  EXPECT_NE(e.find("4096"), std::string::npos) << e;
}

TEST(ChunkedPrefill, SlidingWindowChunksAttendOnlyInsideTheWindow) {
  // Window 128 (GPT-OSS exact): a chunk of 64 after 1000 cached tokens reads
  // the 127 positions before it in reach and its own 64; each query attends 128.
  const ModelArch a = ResolveModelArch("gpt-oss-20b");
  BuildOptions o;
  o.fidelity = Fidelity::kExact;
  o.phase = Phase::kPrefill;
  o.prompt_tokens = 64;
  o.past_tokens = 1000;
  const ModelGraph g = BuildModelGraph(a, PresetPlan("w4", a), o);
  int sliding = 0;
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    if (n.kind != OpKind::kAttention || n.context_cap == 0) continue;
    ++sliding;
    const double per_pair = static_cast<double>(a.num_attention_heads) * (4.0 * a.head_dim + 5);
    // GPT-OSS's attention sink: one more logit per head and query (5 softmax ops).
    const double sink = a.attention_sinks ? 64.0 * static_cast<double>(a.num_attention_heads) * 5 : 0.0;
    EXPECT_TRUE(a.attention_sinks);
    EXPECT_DOUBLE_EQ(n.flops, 64 * 128 * per_pair + sink);
    EXPECT_DOUBLE_EQ(n.kv_read_bytes, (127 + 64) * 2.0 * a.num_key_value_heads * a.head_dim * 2.0);
  }
  EXPECT_GT(sliding, 0);
}

}  // namespace
}  // namespace lifeline
