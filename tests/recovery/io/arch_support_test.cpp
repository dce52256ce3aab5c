#include "recovery/io/arch_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "recovery/io/hf_checkpoint.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

using nlohmann::ordered_json;

// A small dense Llama config.json; each test changes one key.
ordered_json Llama() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 32},
          {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"vocab_size", 50}, {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"hidden_act", "silu"}};
}

// The error of loading `cfg` (written one key per line), or "" when it loads.
std::string ErrorOf(const ordered_json& cfg, const std::filesystem::path& path) {
  testing::WriteFile(path, cfg.dump(1));
  try {
    LoadRecoveryModelArch(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The 1-based line of `key` in cfg.dump(1).
int LineOf(const ordered_json& cfg, const std::string& key) {
  const std::string text = cfg.dump(1);
  const size_t at = text.find("\"" + key + "\"");
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
}

struct Refusal {
  std::string key;
  nlohmann::json value;
  std::string says;  // part of the message
};

TEST(ArchSupport, RefusesWhatTheDecoderCannotRun) {
  testing::TempDir dir;
  const auto path = dir.path() / "config.json";
  const std::vector<Refusal> cases = {
      {"model_type", "gemma2", "'gemma2' is a model family the recovery decoder does not implement"},
      {"model_type", "deepseek_v3", "does not implement"},
      {"num_local_experts", 8, "mixture-of-experts"},
      {"num_experts", 64, "mixture-of-experts"},
      {"n_routed_experts", 256, "mixture-of-experts"},
      {"kv_lora_rank", 512, "multi-head latent attention"},
      {"q_lora_rank", 1536, "multi-head latent attention"},
      {"sliding_window", 4096, "sliding-window attention (4096 tokens)"},
      {"layer_types", {"full_attention", "sliding_attention"}, "\"sliding_attention\""},
      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}, "RoPE scaling 'llama3'"},
      {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}, "RoPE scaling 'linear'"},
      {"partial_rotary_factor", 0.5, "RoPE on part of each head"},
      {"hidden_act", "gelu_pytorch_tanh", "gate activation \"gelu_pytorch_tanh\""},
      {"final_logit_softcapping", 30.0, "logit soft-capping"},
  };
  for (const Refusal& c : cases) {
    ordered_json cfg = Llama();
    cfg[c.key] = c.value;
    const std::string err = ErrorOf(cfg, path);
    SCOPED_TRACE(c.key + " = " + c.value.dump());
    EXPECT_NE(err.find(c.says), std::string::npos) << err;
    const std::string where = path.string() + ":" + std::to_string(LineOf(cfg, c.key)) + ":";
    EXPECT_EQ(err.rfind(where, 0), 0u) << err;
    EXPECT_NE(err.find("key '" + c.key + "'"), std::string::npos) << err;
    EXPECT_NE(err.find("hint: the recovery decoder runs dense Llama, Mistral, Qwen2 and Qwen3"),
              std::string::npos)
        << err;
  }
  ordered_json no_type = Llama();
  no_type.erase("model_type");
  EXPECT_NE(ErrorOf(no_type, path).find("key 'model_type': missing"), std::string::npos);
}

TEST(ArchSupport, AcceptsTheFamiliesItRuns) {
  testing::TempDir dir;
  const auto path = dir.path() / "config.json";
  EXPECT_EQ(ErrorOf(Llama(), path), "");
  ordered_json qwen2 = Llama();
  qwen2["model_type"] = "qwen2";
  qwen2["sliding_window"] = 32768;  // Qwen2 configs carry a window they do not use
  qwen2["use_sliding_window"] = false;
  EXPECT_EQ(ErrorOf(qwen2, path), "");
  EXPECT_TRUE(LoadRecoveryModelArch(path).qkv_bias);  // q/k/v biases are Qwen2's
  ordered_json biased = Llama();  // Llama's attention_bias: q/k/v and o_proj
  biased["attention_bias"] = true;
  EXPECT_EQ(ErrorOf(biased, path), "");
  EXPECT_EQ(ExpectedHfTensorShapes(LoadRecoveryModelArch(path)).at("model.layers.1.self_attn.o_proj.bias"),
            (std::vector<int64_t>{32}));
  ordered_json mistral = Llama();
  mistral["model_type"] = "mistral";
  mistral["sliding_window"] = nullptr;
  mistral["rope_scaling"] = nullptr;
  EXPECT_EQ(ErrorOf(mistral, path), "");
  ordered_json qwen3 = Llama();
  qwen3["model_type"] = "qwen3";
  qwen3["head_dim"] = 16;
  qwen3["layer_types"] = {"full_attention", "full_attention"};
  qwen3["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  qwen3.erase("rope_theta");
  EXPECT_EQ(ErrorOf(qwen3, path), "");
  const ModelArch a = LoadRecoveryModelArch(path);
  EXPECT_TRUE(a.qk_norm);
  EXPECT_EQ(a.rope_theta, 1000000.0);
}

TEST(ArchSupport, TheDecoderCheckSeesTheArchitectureItself) {
  ModelArch a;
  a.hidden_act = "silu";
  EXPECT_NO_THROW(CheckRecoverySupportsArch(a, "probe"));
  a.sliding_window = 128;
  EXPECT_THROW(CheckRecoverySupportsArch(a, "probe"), ConfigError);
  a.sliding_window = 0;
  a.num_local_experts = 4;
  EXPECT_THROW(CheckRecoverySupportsArch(a, "probe"), ConfigError);
  a.num_local_experts = 0;
  a.hidden_act = "gelu";
  EXPECT_THROW(CheckRecoverySupportsArch(a, "probe"), ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
