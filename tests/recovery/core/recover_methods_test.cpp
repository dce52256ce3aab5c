// `recover --method/--degrade`: recovery.json fields and bad inputs.
#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "recovery/cli/recipe.hpp"
#include "recovery/cli/recover_command.hpp"
#include "recovery/model/shared_paths.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;

fs::path WriteFile(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / name;
  std::ofstream(p) << text;
  return p;
}

RecoverRecipe Tiny(const std::string& out) {
  RecoverRecipe r;
  r.samples = 8;
  r.sample_len = 32;
  r.gen_batch = 8;
  r.steps = 4;
  r.batch = 4;
  r.warmup = 1;
  r.eval_limit = 6;
  r.threads = 1;
  r.save_data = false;
  r.out = (fs::temp_directory_path() / out).string();
  fs::remove_all(r.out);
  return r;
}

TEST(RecoverMethods, BadMethodsAndDegradationsAreRefused) {
  const std::string out = "--out /nonexistent/lifeline_methods_out";
  ExpectHas(RecoverCli("--method qlora " + out), {"--method", "'qlora' is not supported", "llm-qat"});
  ExpectHas(RecoverCli("--degrade quant,blur " + out), {"--degrade", "unknown degradation 'blur'", "bitflip"});
  ExpectHas(RecoverCli("--degrade noise,noise " + out), {"--degrade", "listed twice"});
  ExpectHas(RecoverCli("--method llm-qat --rank 8 " + out), {"--rank", "adapter option with method llm-qat"});
  ExpectHas(RecoverCli("--method llm-qat --lora-targets mlp.up_proj " + out), {"--lora-targets", "llm-qat"});
  ExpectHas(RecoverCli("--qat-ste " + out), {"--qat-ste", "method llm-qat"});
  ExpectHas(RecoverCli("--method llm-qat --qat-ste --degrade quant,noise " + out), {"--qat-ste", "last degradation"});
  ExpectHas(RecoverCli("--noise-l2 1 --noise-rel-l2 0.1 --degrade noise " + out), {"--noise-l2", "noise_rel_l2"});
  ExpectHas(RecoverCli("--dtype fp4 " + out), {"--dtype", "'fp4' is not supported", "fp8-e4m3"});
  ExpectHas(RecoverCli("--bitflip-rate 0.7 " + out), {"--bitflip-rate", "out of range"});
  // Recipe keys: file and line.
  const fs::path y = WriteFile("lifeline_recipe_qat.yaml", "method: llm-qat\nrank: 8\n");
  ExpectHas(ErrorOf([&] { LoadRecipe(y); }), {"lifeline_recipe_qat.yaml:2", "rank", "llm-qat"});
  const fs::path y2 = WriteFile("lifeline_recipe_rank.yaml", "steps: 3\nalpha: 16\n");
  ExpectHas(RecoverCli("--recipe " + y2.string() + " --method llm-qat " + out),
            {"lifeline_recipe_rank.yaml:2", "alpha", "llm-qat"});
  const fs::path y3 = WriteFile("lifeline_recipe_deg.yaml", "degrade: [quant, smear]\n");
  ExpectHas(ErrorOf([&] { LoadRecipe(y3); }), {"lifeline_recipe_deg.yaml:1", "degrade", "smear"});
  // An absolute noise target given alone replaces the relative default.
  const fs::path y4 = WriteFile("lifeline_recipe_noise.yaml", "degrade: noise\nnoise_l2: 0.5\n");
  const RecoverRecipe r4 = LoadRecipe(y4);
  EXPECT_EQ(r4.noise_rel_l2, 0.0);
  EXPECT_EQ(r4.noise_l2, 0.5);
}

TEST(RecoverMethods, DegradationPatternMatchingNoLayerIsRefused) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_methods_nolayer");
  r.degrade = {"noise"};
  r.layers = {"self_attn.kv_proj"};
  ExpectHas(ErrorOf([&] { RunRecovery(r); }), {"--layers", "matches no linear layer"});
}

TEST(RecoverMethods, LlmQatOnNoiseRecordsMethodDegradationAndSizes) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_methods_llmqat");
  r.method = "llm-qat";
  r.degrade = {"noise"};
  r.noise_rel_l2 = 0.3;
  r.layers = {"self_attn.k_proj", "self_attn.v_proj"};
  r.lr = 1e-3;
  const nlohmann::json j = RunRecovery(r);
  EXPECT_EQ(j["method"], "llm-qat");
  EXPECT_EQ(j["degradation"]["kinds"], nlohmann::json{"noise"});
  EXPECT_EQ(j["degradation"]["noise"]["layers"].size(), 10u);
  for (const auto& l : j["degradation"]["noise"]["layers"])
    EXPECT_NEAR(l["rel_l2"].get<double>(), 0.3, 0.3 * 1e-5) << l["name"];
  EXPECT_EQ(j["degradation"]["first_k_proj"], "model.layers.0.self_attn.k_proj");
  EXPECT_GT(j["degradation"]["first_k_proj_l2_norm_diff"].get<double>(), 0);
  EXPECT_FALSE(j.contains("quantization"));
  // stories260K: every parameter trains (tied embeddings counted once).
  EXPECT_GT(j["trainable_params"].get<int64_t>(), 250000);
  EXPECT_EQ(j["train_tokens"], j["data"]["tokens"]);
  EXPECT_TRUE(fs::exists(fs::path(r.out) / "model.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(r.out) / "adapters"));
  EXPECT_GT(j["metrics"]["perplexity"]["quantized"].get<double>(), j["metrics"]["perplexity"]["teacher"].get<double>());
  fs::remove_all(r.out);
}

TEST(RecoverMethods, SftLoraTrainsAdaptersByCrossEntropyOnText) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_methods_sft");
  r.method = "sft-lora";
  r.rank = 4;
  r.data = "text:" + TinyStoriesValPath().string();
  r.data_skip = 10;
  const nlohmann::json j = RunRecovery(r);
  EXPECT_EQ(j["method"], "sft-lora");
  EXPECT_EQ(j["training"]["loss"], "next_token_cross_entropy");
  EXPECT_EQ(j["degradation"]["quant"]["layers"].size(), 10u);
  EXPECT_EQ(j["quantization"]["layers"].size(), 10u);
  // r (in + out) per adapted layer: 10 gate/up layers of 64 -> 172.
  EXPECT_EQ(j["trainable_params"].get<int64_t>(), 10 * 4 * (64 + 172));
  EXPECT_TRUE(fs::exists(fs::path(r.out) / "adapters" / "adapter_model.safetensors"));
  fs::remove_all(r.out);
}

}  // namespace
}  // namespace lifeline::recovery
