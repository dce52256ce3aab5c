// Architecture families from Hugging Face config.json files (published values
// in tests/data/hf_configs/): parameter counts against the published figures,
// KV-cache bytes by hand for MLA, GQA and sliding windows, the family-specific
// operators, and the refusals and warnings of the loader.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/hf_config.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

std::filesystem::path Configs() { return std::filesystem::path(LIFELINE_TEST_DATA_DIR) / "hf_configs"; }
ModelArch Hf(const std::string& name) { return LoadModelArch(Configs() / (name + ".json")); }

ModelGraph Exact(const ModelArch& a, int64_t batch = 1) {
  BuildOptions o;
  o.fidelity = Fidelity::kExact;
  o.batch = batch;
  return BuildModelGraph(a, ResolveQuantPlan("bf16", a), o);
}

const OpNode* Find(const ModelGraph& g, const std::string& name) {
  for (auto v : g.order) {
    if (g.graph[v].name == name) return &g.graph[v];
  }
  return nullptr;
}

// A published parameter count is printed to a few digits, rounded or cut off
// (Qwen and DeepSeek print 3.35 B as "3.3 B"): the test allows 1% or half a
// unit of the last printed digit below it, and 1% or a whole unit above it,
// whichever is larger (`unit` is that unit, in parameters).
void ExpectPublished(double got, double published, double unit, const std::string& what) {
  const double below = std::max(0.01 * published, unit / 2), above = std::max(0.01 * published, unit);
  EXPECT_TRUE(got >= published - below && got <= published + above)
      << what << ": got " << got / 1e9 << " B, published " << published / 1e9 << " B (allowed "
      << (published - below) / 1e9 << " .. " << (published + above) / 1e9 << " B)";
  std::printf("%-34s %10.4f B   published %8.3f B\n", what.c_str(), got / 1e9, published / 1e9);
}

double Embedding(const ModelArch& a) { return static_cast<double>(a.vocab_size * a.hidden_size); }

TEST(ArchFamilies, DenseParameterCountsMatchThePublishedOnes) {
  // Llama 2 7B: 6,738,415,616 (Hugging Face safetensors of meta-llama/Llama-2-7b-hf).
  EXPECT_EQ(Hf("llama-2-7b").TotalParameterCount(), 6738415616);
  // Llama 3.1 8B: 8.03 B (meta-llama/Llama-3.1-8B model page).
  ExpectPublished(Hf("llama-3.1-8b").TotalParameterCount(), 8.03e9, 0.01e9, "llama-3.1-8b");
  // Mistral 7B v0.1: 7,241,732,096 (mistralai/Mistral-7B-v0.1 safetensors).
  EXPECT_EQ(Hf("mistral-7b-v0.1").TotalParameterCount(), 7241732096);
  // Qwen2.5-7B: 7.61 B, 6.53 B non-embedding (Qwen/Qwen2.5-7B model card).
  const ModelArch q25 = Hf("qwen2.5-7b");
  ExpectPublished(q25.TotalParameterCount(), 7.61e9, 0.01e9, "qwen2.5-7b");
  ExpectPublished(q25.TotalParameterCount() - 2 * Embedding(q25), 6.53e9, 0.01e9, "qwen2.5-7b non-embedding");
  // Qwen3-8B: 8.2 B, 6.95 B non-embedding (Qwen/Qwen3-8B model card).
  const ModelArch q3 = Hf("qwen3-8b");
  ExpectPublished(q3.TotalParameterCount(), 8.2e9, 0.1e9, "qwen3-8b");
  ExpectPublished(q3.TotalParameterCount() - 2 * Embedding(q3), 6.95e9, 0.01e9, "qwen3-8b non-embedding");
  // Gemma 2 9B: 917,504,000 embedding + 8,324,201,984 non-embedding parameters
  // (Gemma 2 report, arXiv:2408.00118, Table 2); tied embeddings.
  const ModelArch g2 = Hf("gemma-2-9b");
  EXPECT_EQ(g2.TotalParameterCount(), 917504000 + 8324201984);
  // Gemma 3 4B: 3,209 M non-embedding parameters (Gemma 3 report,
  // arXiv:2503.19786, Table 1; the text model, without the vision encoder).
  const ModelArch g3 = Hf("gemma-3-4b");
  ExpectPublished(g3.TotalParameterCount() - Embedding(g3), 3209e6, 1e6, "gemma-3-4b non-embedding");
  // Phi-3-mini: 3.82 B (microsoft/Phi-3-mini-4k-instruct model page; "3.8 B" in arXiv:2404.14219).
  ExpectPublished(Hf("phi-3-mini").TotalParameterCount(), 3.82e9, 0.01e9, "phi-3-mini");
  for (const char* n : {"llama-2-7b", "mistral-7b-v0.1", "qwen2.5-7b", "gemma-2-9b", "phi-3-mini"}) {
    EXPECT_EQ(Hf(n).ActiveParameterCount(), Hf(n).TotalParameterCount()) << n;
  }
}

TEST(ArchFamilies, MoeTotalAndActiveParameterCountsMatchThePublishedOnes) {
  // Mixtral 8x7B: 46.7 B total, 12.9 B per token (Mistral AI, "Mixtral of
  // experts", 2023); its active count includes the embedding and LM head.
  const ModelArch mx = Hf("mixtral-8x7b");
  ExpectPublished(mx.TotalParameterCount(), 46.7e9, 0.1e9, "mixtral total");
  ExpectPublished(mx.ActiveParameterCount(), 12.9e9, 0.1e9, "mixtral active");
  // Qwen3-30B-A3B: 30.5 B total, 29.9 B non-embedding, 3.3 B activated
  // (Qwen/Qwen3-30B-A3B model card).
  const ModelArch qm = Hf("qwen3-30b-a3b");
  ExpectPublished(qm.TotalParameterCount(), 30.5e9, 0.1e9, "qwen3-30b-a3b total");
  ExpectPublished(qm.TotalParameterCount() - 2 * Embedding(qm), 29.9e9, 0.1e9, "qwen3-30b-a3b non-embedding");
  ExpectPublished(qm.ActiveParameterCount(), 3.3e9, 0.1e9, "qwen3-30b-a3b active");
  // GPT-OSS-20B: 20.91 B total, 3.61 B active (gpt-oss model card,
  // arXiv:2508.10925, Table 1); the card's active count leaves out the
  // embedding table (an index lookup) but counts the unembedding.
  const ModelArch oss = Hf("gpt-oss-20b");
  ExpectPublished(oss.TotalParameterCount(), 20.91e9, 0.01e9, "gpt-oss-20b total");
  ExpectPublished(oss.ActiveParameterCount() - Embedding(oss), 3.61e9, 0.01e9, "gpt-oss-20b active");
  // DeepSeek-V2-Lite: 15.7 B total, 2.4 B activated (DeepSeek-V2 paper,
  // arXiv:2405.04434, Appendix B), the active count without the embedding table.
  const ModelArch v2 = Hf("deepseek-v2-lite");
  ExpectPublished(v2.TotalParameterCount(), 15.7e9, 0.1e9, "deepseek-v2-lite total");
  ExpectPublished(v2.ActiveParameterCount() - Embedding(v2), 2.4e9, 0.1e9, "deepseek-v2-lite active");
  // DeepSeek-V3: 671 B total, 37 B activated (DeepSeek-V3 report,
  // arXiv:2412.19437), both without the multi-token-prediction module.
  const ModelArch v3 = Hf("deepseek-v3");
  ExpectPublished(v3.TotalParameterCount(), 671e9, 1e9, "deepseek-v3 total");
  ExpectPublished(v3.ActiveParameterCount() - Embedding(v3), 37e9, 1e9, "deepseek-v3 active");
}

TEST(ArchFamilies, FamilyStructureIsReadFromTheConfig) {
  const ModelArch v2 = Hf("deepseek-v2-lite");
  EXPECT_TRUE(v2.IsMla());
  EXPECT_EQ(v2.q_lora_rank, 0);  // null: a full q_proj
  EXPECT_FALSE(v2.LayerIsMoe(0));  // first_k_dense_replace: 1
  EXPECT_TRUE(v2.LayerIsMoe(1));
  EXPECT_EQ(v2.shared_expert_intermediate_size, 2 * 1408);
  const ModelArch v3 = Hf("deepseek-v3");
  EXPECT_EQ(v3.q_lora_rank, 1536);
  EXPECT_FALSE(v3.LayerIsMoe(2));
  EXPECT_TRUE(v3.LayerIsMoe(3));
  EXPECT_EQ(Hf("qwen3-30b-a3b").ExpertIntermediateSize(), 768);
  EXPECT_TRUE(Hf("qwen2.5-7b").qkv_bias);
  EXPECT_FALSE(Hf("qwen2.5-7b").HasSlidingLayers());  // use_sliding_window: false
  const ModelArch g2 = Hf("gemma-2-9b");
  EXPECT_EQ(g2.head_dim, 256);
  EXPECT_TRUE(g2.tie_word_embeddings);
  EXPECT_EQ(g2.LayerAttention(0), AttentionKind::kSliding);
  EXPECT_EQ(g2.LayerAttention(1), AttentionKind::kFull);
  const ModelArch g3 = Hf("gemma-3-4b");
  for (int64_t l = 0; l < g3.num_hidden_layers; ++l) {
    EXPECT_EQ(g3.LayerAttention(l), (l + 1) % 6 == 0 ? AttentionKind::kFull : AttentionKind::kSliding) << l;
  }
  const ModelArch m = Hf("mistral-7b-v0.1");
  ASSERT_EQ(m.layer_types.size(), 32u);
  EXPECT_TRUE(std::all_of(m.layer_types.begin(), m.layer_types.end(),
                          [](AttentionKind k) { return k == AttentionKind::kSliding; }));
}

TEST(ArchFamilies, KvBytesPerTokenByHand) {
  const DeviceSpec d = ResolveDeviceSpec("device_a");
  auto kv_per_token = [&](const ModelArch& a) {
    const ModelGraph g = Exact(a);
    double write = 0;
    for (auto v : g.order) write += g.graph[v].kv_write_bytes;
    return write;
  };
  // MLA (DeepSeek-V2-Lite): the latent (kv_lora_rank 512) and the shared RoPE
  // key (64) per layer, BF16: 27 x 576 x 2 = 31,104 bytes per token.
  EXPECT_DOUBLE_EQ(kv_per_token(Hf("deepseek-v2-lite")), 27.0 * (512 + 64) * 2);
  // GQA (Llama 3.1 8B): K and V of 8 heads of 128, BF16, 32 layers = 131,072.
  EXPECT_DOUBLE_EQ(kv_per_token(Hf("llama-3.1-8b")), 32.0 * 2 * 8 * 128 * 2);
  // Sliding window (Mistral 7B, window 4096): at a 32k context each layer reads
  // the 4096 positions of its window, K and V of 8 heads of 128 in BF16:
  // 4096 x 4096 = 16,777,216 bytes per layer.
  const ModelGraph mg = Exact(Hf("mistral-7b-v0.1"));
  const StepResult r = EvaluateStep(mg, d, 32768);
  for (size_t i = 0; i < mg.order.size(); ++i) {
    const OpNode& n = mg.graph[mg.order[i]];
    if (n.kind == OpKind::kAttention) EXPECT_DOUBLE_EQ(r.ops[i].kv_bytes, 4096.0 * 2 * 8 * 128 * 2) << n.name;
  }
  // MLA decode reads the same latent per context position.
  const ModelGraph dg = Exact(Hf("deepseek-v2-lite"));
  const StepResult rd = EvaluateStep(dg, d, 1000);
  double read = 0;
  for (size_t i = 0; i < dg.order.size(); ++i) {
    if (dg.graph[dg.order[i]].kind == OpKind::kAttention) read += rd.ops[i].kv_bytes;
  }
  EXPECT_DOUBLE_EQ(read, 1000.0 * 27 * (512 + 64) * 2);
}

TEST(ArchFamilies, GraphsCarryTheFamilyOperators) {
  const ModelGraph g2 = Exact(Hf("gemma-2-9b"));
  const OpNode* q = Find(g2, "layers.0.attn.q_proj");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->n, 16 * 256);  // head_dim from the config, not 3584 / 16
  EXPECT_NE(Find(g2, "layers.0.pre_feedforward_layernorm"), nullptr);
  EXPECT_NE(Find(g2, "layers.0.post_feedforward_layernorm"), nullptr);
  EXPECT_NE(Find(g2, "lm_head.softcap"), nullptr);
  // Qwen2's q/k/v biases: one BF16 value per output.
  const ModelGraph q25 = Exact(Hf("qwen2.5-7b"));
  EXPECT_DOUBLE_EQ(Find(q25, "layers.0.attn.k_proj")->weight_bytes, (3584.0 * 512 + 512) * 2);
  EXPECT_DOUBLE_EQ(Find(q25, "layers.0.attn.o_proj")->weight_bytes, 3584.0 * 3584 * 2);
  // DeepSeek: dense first layer, shared experts, absorbed MLA decode path.
  const ModelGraph v2 = Exact(Hf("deepseek-v2-lite"));
  EXPECT_NE(Find(v2, "layers.0.mlp.gate_proj"), nullptr);
  EXPECT_NE(Find(v2, "layers.1.mlp.shared_experts.gate_proj"), nullptr);
  EXPECT_EQ(Find(v2, "layers.1.mlp.shared_experts.gate_proj")->n, 2 * 1408);
  EXPECT_EQ(Find(v2, "layers.1.mlp.experts.gate_proj")->n, 1408);
  EXPECT_NE(Find(v2, "layers.0.attn.kv_b_proj.k_absorb"), nullptr);
  // The absorbed W_UK maps each head's 128 nope dims to the 512-dim latent: the
  // attention reads a query of 16 heads x 512 per token, not 16 x 128.
  int absorbed_edges = 0;
  for (auto [e, end] = boost::edges(v2.graph); e != end; ++e) {
    if (v2.graph[boost::source(*e, v2.graph)].name != "layers.0.attn.kv_b_proj.k_absorb") continue;
    EXPECT_DOUBLE_EQ(v2.graph[*e].bytes, 16.0 * 512 * 2) << v2.graph[*e].tensor;
    ++absorbed_edges;
  }
  EXPECT_GT(absorbed_edges, 0);
  // Stored weights of the graph equal the parameter count (BF16, 2 bytes each)
  // for every family but the tied ones, whose LM head reuses the embedding.
  for (const char* n : {"llama-2-7b", "mistral-7b-v0.1", "mixtral-8x7b", "qwen2.5-7b", "qwen3-30b-a3b",
                        "deepseek-v2-lite", "phi-3-mini"}) {
    const ModelArch a = Hf(n);
    const ModelGraph g = Exact(a);
    double stored = 0;
    for (auto v : g.order) {
      const OpNode& o = g.graph[v];
      stored += o.stored_weight_bytes ? *o.stored_weight_bytes : o.weight_bytes + o.weight_meta_bytes;
    }
    EXPECT_NEAR(stored / 2, static_cast<double>(a.TotalParameterCount()), 1e-6 * a.TotalParameterCount()) << n;
  }
}

TEST(ArchFamilies, UnknownKeysWarnAndContextBeyondTheModelWarns) {
  const ModelArch oss = Hf("gpt-oss-20b");
  ASSERT_EQ(oss.warnings.size(), 1u);  // quantization_config: the plan sets formats
  EXPECT_NE(oss.warnings[0].find("quantization_config"), std::string::npos);
  const ModelArch l2 = Hf("llama-2-7b");
  EXPECT_TRUE(ModelWarnings(l2, 4096).empty());
  const auto w = ModelWarnings(l2, 8192);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("max_position_embeddings of 4096"), std::string::npos) << w[0];
}

TEST(ArchFamilies, SupportedTypesAreListed) {
  const auto& t = SupportedModelTypes();
  for (const char* m : {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "gemma3_text", "phi3",
                        "gpt_oss", "deepseek_v2", "deepseek_v3"}) {
    EXPECT_NE(std::find(t.begin(), t.end(), m), t.end()) << m;
  }
}

}  // namespace
}  // namespace lifeline
