#include "recovery/io/hf_checkpoint.hpp"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "recovery/io/safetensors.hpp"
#include "common/error.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

using testing::TempDir;
using testing::WriteFile;

struct TinyConfig {
  std::string model_type;
  int64_t hidden = 16, inter = 24, layers = 2, heads = 4, kv_heads = 2, head_dim = 4, vocab = 40;
  bool tied = false;
  bool explicit_head_dim = false;
};

nlohmann::json ConfigJson(const TinyConfig& c) {
  nlohmann::json j = {{"architectures", {c.model_type == "qwen3" ? "Qwen3ForCausalLM" : "LlamaForCausalLM"}},
                      {"model_type", c.model_type},
                      {"hidden_size", c.hidden},
                      {"intermediate_size", c.inter},
                      {"num_hidden_layers", c.layers},
                      {"num_attention_heads", c.heads},
                      {"num_key_value_heads", c.kv_heads},
                      {"vocab_size", c.vocab},
                      {"max_position_embeddings", 128},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"hidden_act", "silu"},
                      {"torch_dtype", "bfloat16"},
                      {"tie_word_embeddings", c.tied}};
  if (c.explicit_head_dim) j["head_dim"] = c.head_dim;
  return j;
}

// Random weights with the Hugging Face names and shapes of `c`, in bf16.
std::map<std::string, at::Tensor> TinyWeights(const TinyConfig& c) {
  at::manual_seed(7);
  std::map<std::string, at::Tensor> w;
  auto rnd = [](std::vector<int64_t> shape) { return at::randn(shape).to(at::kBFloat16); };
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  w["model.embed_tokens.weight"] = rnd({c.vocab, c.hidden});
  w["model.norm.weight"] = rnd({c.hidden});
  if (!c.tied) w["lm_head.weight"] = rnd({c.vocab, c.hidden});
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w[p + "input_layernorm.weight"] = rnd({c.hidden});
    w[p + "post_attention_layernorm.weight"] = rnd({c.hidden});
    w[p + "self_attn.q_proj.weight"] = rnd({q, c.hidden});
    w[p + "self_attn.k_proj.weight"] = rnd({kv, c.hidden});
    w[p + "self_attn.v_proj.weight"] = rnd({kv, c.hidden});
    w[p + "self_attn.o_proj.weight"] = rnd({c.hidden, q});
    if (c.model_type == "qwen3") {
      w[p + "self_attn.q_norm.weight"] = rnd({c.head_dim});
      w[p + "self_attn.k_norm.weight"] = rnd({c.head_dim});
    }
    w[p + "mlp.gate_proj.weight"] = rnd({c.inter, c.hidden});
    w[p + "mlp.up_proj.weight"] = rnd({c.inter, c.hidden});
    w[p + "mlp.down_proj.weight"] = rnd({c.hidden, c.inter});
  }
  return w;
}

void WriteCheckpoint(const std::filesystem::path& dir, const TinyConfig& c,
                     const std::map<std::string, at::Tensor>& w, bool sharded) {
  WriteFile(dir / "config.json", ConfigJson(c).dump(2));
  if (!sharded) {
    WriteSafetensors(dir / "model.safetensors", w, {{"format", "pt"}});
    return;
  }
  // Layers 0 and the embeddings in shard 1, the rest in shard 2.
  std::map<std::string, at::Tensor> s1, s2;
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, t] : w) {
    const bool first = name.find("layers.0.") != std::string::npos || name.find("embed") != std::string::npos;
    const std::string shard = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (first ? s1 : s2)[name] = t;
    index["weight_map"][name] = shard;
  }
  WriteSafetensors(dir / "model-00001-of-00002.safetensors", s1);
  WriteSafetensors(dir / "model-00002-of-00002.safetensors", s2);
  WriteFile(dir / "model.safetensors.index.json", index.dump(2));
}

void ExpectSameAsFloat(const HfCheckpoint& ck, const std::map<std::string, at::Tensor>& w) {
  for (const auto& [name, t] : w) {
    ASSERT_TRUE(ck.tensors.count(name)) << name;
    const at::Tensor& got = ck.tensors.at(name);
    EXPECT_EQ(got.scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(at::equal(got, t.to(at::kFloat))) << name;
  }
}

std::string ErrorOf(const std::filesystem::path& dir) {
  try {
    LoadHfCheckpoint(dir);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(HfCheckpoint, TinyLlamaUntiedSingleFile) {
  TempDir dir;
  TinyConfig c{"llama"};
  const auto w = TinyWeights(c);
  WriteCheckpoint(dir.path(), c, w, false);
  const HfCheckpoint ck = LoadHfCheckpoint(dir.path());
  EXPECT_EQ(ck.arch.model_type, "llama");
  EXPECT_EQ(ck.arch.hidden_size, 16);
  EXPECT_EQ(ck.arch.num_key_value_heads, 2);
  EXPECT_FALSE(ck.arch.tie_word_embeddings);
  EXPECT_EQ(ck.tensors.size(), w.size());
  ExpectSameAsFloat(ck, w);
  EXPECT_EQ(ck.tensors.at("model.layers.1.self_attn.k_proj.weight").sizes(),
            (std::vector<int64_t>{8, 16}));
}

TEST(HfCheckpoint, TinyLlamaTiedSharded) {
  TempDir dir;
  TinyConfig c{"llama"};
  c.tied = true;
  const auto w = TinyWeights(c);
  WriteCheckpoint(dir.path(), c, w, true);
  const HfCheckpoint ck = LoadHfCheckpoint(dir.path());
  EXPECT_TRUE(ck.arch.tie_word_embeddings);
  EXPECT_FALSE(ck.tensors.count("lm_head.weight"));
  ExpectSameAsFloat(ck, w);
}

TEST(HfCheckpoint, TinyQwen3TiedShardedWithQkNormAndHeadDim) {
  TempDir dir;
  TinyConfig c{"qwen3"};
  c.tied = true;
  c.head_dim = 8;  // head_dim * heads (32) != hidden (16), as in real Qwen3 models
  c.explicit_head_dim = true;
  const auto w = TinyWeights(c);
  WriteCheckpoint(dir.path(), c, w, true);
  const HfCheckpoint ck = LoadHfCheckpoint(dir.path());
  EXPECT_TRUE(ck.arch.qk_norm);
  EXPECT_EQ(ck.arch.head_dim, 8);
  ExpectSameAsFloat(ck, w);
  EXPECT_EQ(ck.tensors.at("model.layers.0.self_attn.q_proj.weight").sizes(),
            (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(ck.tensors.at("model.layers.1.self_attn.q_norm.weight").sizes(),
            (std::vector<int64_t>{8}));
}

TEST(HfCheckpoint, TinyQwen3UntiedSingleFile) {
  TempDir dir;
  TinyConfig c{"qwen3"};
  c.head_dim = 8;
  c.explicit_head_dim = true;
  const auto w = TinyWeights(c);
  WriteCheckpoint(dir.path(), c, w, false);
  const HfCheckpoint ck = LoadHfCheckpoint(dir.path());
  ExpectSameAsFloat(ck, w);
  EXPECT_TRUE(ck.tensors.count("lm_head.weight"));
}

TEST(HfCheckpoint, MissingTensorIsNamed) {
  TempDir dir;
  TinyConfig c{"qwen3"};
  auto w = TinyWeights(c);
  w.erase("model.layers.1.self_attn.k_norm.weight");
  WriteCheckpoint(dir.path(), c, w, false);
  const std::string msg = ErrorOf(dir.path());
  EXPECT_NE(msg.find("model.layers.1.self_attn.k_norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(HfCheckpoint, UntiedWithoutLmHeadFails) {
  TempDir dir;
  TinyConfig c{"llama"};
  c.tied = true;
  const auto w = TinyWeights(c);  // no lm_head.weight
  c.tied = false;                 // but the config says untied
  WriteCheckpoint(dir.path(), c, w, false);
  EXPECT_NE(ErrorOf(dir.path()).find("'lm_head.weight' is missing"), std::string::npos);
}

TEST(HfCheckpoint, WrongShapeIsNamedWithBothShapes) {
  TempDir dir;
  TinyConfig c{"llama"};
  auto w = TinyWeights(c);
  w["model.layers.0.mlp.up_proj.weight"] = at::zeros({23, 16});
  WriteCheckpoint(dir.path(), c, w, true);
  const std::string msg = ErrorOf(dir.path());
  EXPECT_NE(msg.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[23, 16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[24, 16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model-00001-of-00002.safetensors"), std::string::npos) << msg;
}

TEST(HfCheckpoint, IntegerWeightIsRefusedNamingTensorAndDtype) {
  // An I32 weight used to load as numbers and give perplexity inf.
  TempDir dir;
  TinyConfig c{"llama"};
  auto w = TinyWeights(c);
  w["model.layers.0.mlp.up_proj.weight"] = at::ones({24, 16}, at::kInt);
  WriteCheckpoint(dir.path(), c, w, false);
  const std::string msg = ErrorOf(dir.path());
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'model.layers.0.mlp.up_proj.weight' has dtype I32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("floating point"), std::string::npos) << msg;
}

TEST(HfCheckpoint, IndexNamesTensorItsShardLacks) {
  TempDir dir;
  TinyConfig c{"llama"};
  const auto w = TinyWeights(c);
  WriteCheckpoint(dir.path(), c, w, true);
  auto index = nlohmann::json::parse(R"({"weight_map": {}})");
  for (const auto& [name, t] : w) index["weight_map"][name] = "model-00001-of-00002.safetensors";
  WriteFile(dir.path() / "model.safetensors.index.json", index.dump());
  const std::string msg = ErrorOf(dir.path());
  EXPECT_NE(msg.find("is missing, though"), std::string::npos) << msg;
  index["weight_map"]["model.norm.weight"] = "../escape.safetensors";
  WriteFile(dir.path() / "model.safetensors.index.json", index.dump());
  EXPECT_NE(ErrorOf(dir.path()).find("must be a file name"), std::string::npos);
}

TEST(HfCheckpoint, MissingFiles) {
  TempDir dir;
  EXPECT_NE(ErrorOf(dir.path() / "nope").find("not a checkpoint directory"), std::string::npos);
  EXPECT_NE(ErrorOf(dir.path()).find("config.json"), std::string::npos);
  WriteFile(dir.path() / "config.json", ConfigJson(TinyConfig{"llama"}).dump());
  EXPECT_NE(ErrorOf(dir.path()).find("no model.safetensors"), std::string::npos);
  WriteFile(dir.path() / "model.safetensors", "garbage");
  EXPECT_NE(ErrorOf(dir.path()).find("invalid safetensors file"), std::string::npos);
  auto moe = ConfigJson(TinyConfig{"llama"});
  moe["num_local_experts"] = 4;
  moe["num_experts_per_tok"] = 2;
  WriteFile(dir.path() / "config.json", moe.dump());
  EXPECT_NE(ErrorOf(dir.path()).find("mixture-of-experts"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::recovery
