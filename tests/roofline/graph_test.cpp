// Operator graph and evaluator: node names, byte accounting, fusion, MoE,
// fidelity modes, and the compiled fast path agreeing with the full walk.

#include <gtest/gtest.h>

#include <set>

#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline {
namespace {

const OpNode* Find(const ModelGraph& g, const std::string& name) {
  for (auto v : g.order)
    if (g.graph[v].name == name) return &g.graph[v];
  return nullptr;
}

ModelGraph Build(const std::string& model, const std::string& plan, BuildOptions o = {}) {
  const ModelArch a = ResolveModelArch(model);
  return BuildModelGraph(a, PresetPlan(plan, a), o);
}

TEST(OpGraph, DenseLayerHasEveryNamedOperator) {
  const ModelGraph g = Build("qwen3-4b", "w4w2-gateup");
  for (const char* n : {"model.embed_tokens", "layers.0.input_layernorm", "layers.0.attn.q_proj", "layers.0.attn.k_proj",
                        "layers.0.attn.v_proj", "layers.0.attn.q_norm", "layers.0.attn.k_norm", "layers.0.attn.rope",
                        "layers.0.attn.kv_append", "layers.0.attn.attention", "layers.0.attn.o_proj",
                        "layers.0.attn.residual_add", "layers.0.post_attention_layernorm", "layers.0.mlp.gate_proj",
                        "layers.0.mlp.up_proj", "layers.0.mlp.act_fn", "layers.0.mlp.down_proj",
                        "layers.0.mlp.residual_add", "layers.35.mlp.down_proj", "model.norm", "lm_head", "sampling"}) {
    EXPECT_NE(Find(g, n), nullptr) << n;
  }
  EXPECT_EQ(Find(g, "layers.36.mlp.down_proj"), nullptr);
  EXPECT_EQ(boost::num_vertices(g.graph), g.order.size());
}

TEST(OpGraph, UnfusedAttentionHasSeparateOps) {
  BuildOptions o;
  o.fusion = FusionMode::kNone;
  const ModelGraph g = Build("llama-3.2-1b", "w4", o);
  for (const char* n : {"layers.0.attn.qk_matmul", "layers.0.attn.softmax", "layers.0.attn.pv_matmul"})
    EXPECT_NE(Find(g, n), nullptr) << n;
  EXPECT_EQ(Find(g, "layers.0.attn.attention"), nullptr);
  EXPECT_EQ(Find(g, "layers.0.attn.q_norm"), nullptr);  // Llama has no q/k norm
}

TEST(OpGraph, LinearBytesAreWeightsPlusGroupMetadata) {
  const ModelGraph g = Build("qwen3-4b", "w4w2-gateup");  // paper fidelity: head_dim 80
  const OpNode* gate = Find(g, "layers.0.mlp.gate_proj");
  ASSERT_NE(gate, nullptr);
  const double w = 2560.0 * 9728.0;
  EXPECT_DOUBLE_EQ(gate->weight_bytes, w * 2 / 8);
  EXPECT_DOUBLE_EQ(gate->weight_meta_bytes, w / 32 * (2 + 2.0 / 8));
  EXPECT_EQ(gate->format, "INT2 g32");
  const OpNode* q = Find(g, "layers.0.attn.q_proj");
  EXPECT_EQ(q->n, 32 * 80);  // paper fidelity head_dim = hidden / heads
  EXPECT_DOUBLE_EQ(q->flops, 2.0 * 2560 * 2560 + 2.0 * 2560 * 2560);  // matmul + dequantisation
  const OpNode* head = Find(g, "lm_head");
  EXPECT_EQ(head->format, "INT4 g128");  // the LM head follows the configuration
  const OpNode* emb = Find(g, "model.embed_tokens");
  EXPECT_DOUBLE_EQ(emb->weight_bytes, 2560.0 * 2);  // one BF16 row per token
}

TEST(OpGraph, ExactFidelityUsesTrueHeadDim) {
  BuildOptions o;
  o.fidelity = Fidelity::kExact;
  const ModelGraph g = Build("qwen3-4b", "w4", o);
  EXPECT_EQ(Find(g, "layers.0.attn.q_proj")->n, 32 * 128);
  EXPECT_EQ(g.head_dim, 128);
}

TEST(OpGraph, FusionKeepsIntermediatesOnChip) {
  BuildOptions fused, unfused;
  unfused.fusion = FusionMode::kNone;
  const ModelGraph a = Build("qwen3-4b", "w4", fused), b = Build("qwen3-4b", "w4", unfused);
  const GraphTotals ta = SumGraph(a, 4096), tb = SumGraph(b, 4096);
  EXPECT_DOUBLE_EQ(ta.weight_bytes, tb.weight_bytes);  // fusion changes only activation traffic
  EXPECT_DOUBLE_EQ(ta.kv_read_bytes, tb.kv_read_bytes);
  EXPECT_LT(ta.act_bytes, tb.act_bytes);
  // Unfused attention writes and reads scores and probabilities: grows with context.
  EXPECT_GT(SumGraph(b, 8192).act_bytes - tb.act_bytes, 0);
  EXPECT_DOUBLE_EQ(SumGraph(a, 8192).act_bytes, ta.act_bytes);
  // Fused gate/up outputs never reach memory.
  EXPECT_DOUBLE_EQ(Find(a, "layers.0.mlp.gate_proj")->act_write_bytes, 0);
  EXPECT_GT(Find(b, "layers.0.mlp.gate_proj")->act_write_bytes, 0);
}

TEST(OpGraph, KvCacheReadOncePerStepPlusAppend) {
  const ModelGraph g = Build("qwen3-4b", "w4");
  const GraphTotals t = SumGraph(g, 1000);
  const double per_token = 36.0 * 2 * 8 * 80 * 2;  // layers * (K,V) * kv heads * head_dim * BF16
  EXPECT_DOUBLE_EQ(t.kv_read_bytes, per_token * 1000);
  EXPECT_DOUBLE_EQ(t.kv_write_bytes, per_token);
  QuantPlan p = PresetPlan("w4", g.arch);
  p.kv_dtype = KvDtype::kInt8;
  const GraphTotals t8 = SumGraph(BuildModelGraph(g.arch, p, {}), 1000);
  EXPECT_NEAR(t8.kv_read_bytes / t.kv_read_bytes, (1 + 2.0 / 64) / 2, 1e-12);
}

TEST(OpGraph, MoeReadsSelectedExpertsOnly) {
  const ModelGraph g = Build("gpt-oss-20b", "w4");
  const OpNode* down = Find(g, "layers.0.mlp.experts.down_proj");
  ASSERT_NE(down, nullptr);
  const double w = 2880.0 * 2880.0;
  EXPECT_NEAR(down->weight_bytes, 4 * (w * 0.5 + 2880 * 2), 1e-3);  // 4 of 32 experts, with biases
  EXPECT_NEAR(down->expert_unpack_ops, 4 * w * 4, 1e-3);  // one op per weight bit
  EXPECT_EQ(down->expert_unpack_bits, 4);
  EXPECT_NE(Find(g, "layers.0.mlp.router"), nullptr);
  EXPECT_NE(Find(g, "layers.0.mlp.experts.combine"), nullptr);
  // Batch 8: expected distinct experts 32 * (1 - (1 - 4/32)^8).
  BuildOptions o;
  o.batch = 8;
  const ModelGraph g8 = Build("gpt-oss-20b", "w4", o);
  const double used = 32 * (1 - std::pow(28.0 / 32.0, 8));
  EXPECT_NEAR(Find(g8, "layers.0.mlp.experts.down_proj")->weight_bytes, used * (w * 0.5 + 2880 * 2), 1e-3);
}

TEST(OpGraph, SlidingWindowOnlyInExactFidelity) {
  BuildOptions exact;
  exact.fidelity = Fidelity::kExact;
  const ModelGraph e = Build("gpt-oss-20b", "w4", exact), p = Build("gpt-oss-20b", "w4");
  EXPECT_EQ(Find(e, "layers.0.attn.attention")->context_cap, 128);
  EXPECT_EQ(Find(e, "layers.1.attn.attention")->context_cap, 0);
  EXPECT_EQ(Find(p, "layers.0.attn.attention")->context_cap, 0);
  // Sliding layers stop growing past the window: exact reads half the KV at long context.
  const double kv_e = SumGraph(e, 32768).kv_read_bytes, kv_e_hd = 24.0 * 2 * 8 * 64 * 2;
  EXPECT_DOUBLE_EQ(kv_e, kv_e_hd / 2 * (32768 + 128));
}

TEST(Evaluator, CompiledGraphEqualsFullWalk) {
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  for (const char* m : {"qwen3-4b", "gpt-oss-20b", "llama-3.2-1b"}) {
    for (auto fid : {Fidelity::kPaper, Fidelity::kExact}) {
      for (auto fus : {FusionMode::kPaper, FusionMode::kNone}) {
        BuildOptions o;
        o.fidelity = fid;
        o.fusion = fus;
        const ModelGraph g = Build(m, "w4w2-gateup", o);
        const CompiledGraph c(g);
        EXPECT_LT(c.TermCount(), 80u) << m;
        for (int64_t ctx : {1, 100, 4096, 32768}) {
          const double full = EvaluateStep(g, d, ctx).total_s;
          EXPECT_NEAR(c.StepSeconds(d, ctx), full, 1e-12 * full) << m << " ctx " << ctx;
        }
      }
    }
  }
}

TEST(Evaluator, MemoryBoundDecodeFollowsBandwidth) {
  const ModelGraph g = Build("qwen3-8b", "w4");
  DeviceSpec d = ResolveDeviceSpec("device_a");
  const StepResult r = EvaluateStep(g, d, 1024);
  EXPECT_GT(r.memory_s, r.compute_s);
  int linear_memory_bound = 0, linears = 0;
  for (size_t i = 0; i < g.order.size(); ++i) {
    if (g.graph[g.order[i]].kind != OpKind::kLinear) continue;
    ++linears;
    linear_memory_bound += r.ops[i].compute_bound ? 0 : 1;
  }
  EXPECT_EQ(linear_memory_bound, linears);  // batch-1 decode: every linear memory bound
  // Doubling bandwidth: memory time halves.
  DeviceSpec d2 = d;
  d2.memory_bandwidth_bytes_per_s *= 2;
  EXPECT_NEAR(EvaluateStep(g, d2, 1024).memory_s, r.memory_s / 2, 1e-12);
}

TEST(Evaluator, PrefillIsComputeHeavyAndBatchRaisesThroughput) {
  const ModelArch a = ResolveModelArch("qwen3-4b");
  const DeviceSpec d = ResolveDeviceSpec("device_b");
  BuildOptions pre;
  pre.phase = Phase::kPrefill;
  pre.prompt_tokens = 2048;
  const ModelGraph gp = BuildModelGraph(a, PresetPlan("w4", a), pre);
  const StepResult rp = EvaluateStep(gp, d, 0);
  EXPECT_GT(rp.compute_s, rp.memory_s);
  EXPECT_DOUBLE_EQ(rp.total_s, std::max(rp.compute_s, rp.memory_s) + rp.overhead_s);
  EXPECT_NEAR(CompiledGraph(gp).StepSeconds(d, 0), rp.total_s, 1e-12 * rp.total_s);
  BuildOptions b1, b8;
  b8.batch = 8;
  const double t1 = CompiledGraph(BuildModelGraph(a, PresetPlan("w4", a), b1)).StepSeconds(d, 2048);
  const double t8 = CompiledGraph(BuildModelGraph(a, PresetPlan("w4", a), b8)).StepSeconds(d, 2048);
  EXPECT_GT(DecodeFromStep(t8, 8).batch_tokens_per_s, 3 * DecodeFromStep(t1, 1).batch_tokens_per_s);
}

}  // namespace
}  // namespace lifeline
