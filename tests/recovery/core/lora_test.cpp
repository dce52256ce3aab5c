#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "recovery/io/safetensors.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "recovery/lora/peft.hpp"
#include "recovery/quant/rtn.hpp"
#include "common/error.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

Decoder Stories() { return BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath())); }

TEST(Lora, StandardInitLeavesOutputUnchangedAndTrainsOnlyAdapters) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = Stories();
  const at::Tensor ids = at::randint(3, 512, {2, 16}, at::kLong);
  at::Tensor before;
  {
    torch::NoGradGuard g;
    before = model->forward(ids);
  }
  LoraConfig cfg;
  cfg.rank = 8;
  cfg.alpha = 16;
  const auto names = AttachLora(model, cfg);
  EXPECT_EQ(names.size(), 10u);
  EXPECT_EQ(names.front(), "model.layers.0.mlp.gate_proj");
  int64_t trainable = 0;
  for (const auto& item : model->named_parameters()) {
    if (item.value().requires_grad()) {
      trainable += item.value().numel();
      EXPECT_NE(item.key().find("lora_"), std::string::npos) << item.key();
    }
  }
  EXPECT_EQ(trainable, 10 * 8 * (64 + 172));
  const auto layers = LoraLayers(model);
  const at::Tensor a = layers[0].second->lora_A();
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{8, 64}));
  EXPECT_LE(a.abs().max().item<double>(), 1.0 / 8.0);  // U(±1/√64)
  EXPECT_GT(a.abs().max().item<double>(), 0.1);
  EXPECT_TRUE((layers[0].second->lora_B() == 0).all().item<bool>());
  torch::NoGradGuard g;
  EXPECT_LT((model->forward(ids) - before).abs().max().item<double>(), 1e-6);
  // Named parameters keep HF names for the frozen base.
  bool has_base = false;
  for (const auto& item : model->named_parameters()) {
    has_base = has_base || item.key() == "model.layers.0.mlp.gate_proj.base_layer.weight";
  }
  EXPECT_TRUE(has_base);
}

TEST(Lora, MergeUnmerge) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = Stories();
  FakeQuantizeLayers(model, {"mlp.gate_proj", "mlp.up_proj"}, {2, 32, QuantScheme::kAsymmetric});
  const at::Tensor ids = at::randint(3, 512, {2, 16}, at::kLong);
  torch::NoGradGuard g;
  LoraConfig cfg;
  cfg.rank = 16;
  cfg.alpha = 32;
  AttachLora(model, cfg);
  auto layer = LoraLayers(model)[3].second;
  for (auto& [name, l] : LoraLayers(model)) l->lora_B().add_(at::randn_like(l->lora_B()) * 0.05);
  const at::Tensor y = model->forward(ids);
  const at::Tensor w0 = layer->BaseWeight().clone();
  for (auto& [name, l] : LoraLayers(model)) l->Merge();
  EXPECT_TRUE(layer->merged());
  EXPECT_LT((model->forward(ids) - y).abs().max().item<double>(), 1e-4);
  for (auto& [name, l] : LoraLayers(model)) l->Unmerge();
  EXPECT_LT((layer->BaseWeight() - w0).abs().max().item<double>(), 1e-6);
  EXPECT_LT((model->forward(ids) - y).abs().max().item<double>(), 1e-4);
}

TEST(Lora, BadRankAndPatternAreConfigErrors) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = Stories();
  LoraConfig cfg;
  cfg.rank = 65;  // gate_proj is 64 -> 172
  try {
    AttachLora(model, cfg);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("expected 1..64"), std::string::npos) << e.what();
  }
  Decoder model2 = Stories();
  cfg.rank = 4;
  cfg.targets = {"self_attn.qkv"};
  EXPECT_THROW(AttachLora(model2, cfg), ConfigError);
  EXPECT_THROW(ParseLoraInit("pissa", "--init"), ConfigError);
}

TEST(Lora, PeftExportRoundTrip) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = Stories();
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 8;
  cfg.targets = {"mlp.gate_proj", "self_attn.v_proj"};
  AttachLora(model, cfg);
  {
    torch::NoGradGuard g;
    for (auto& [name, l] : LoraLayers(model)) l->lora_B().normal_(0, 0.1);
  }
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_peft_test";
  std::filesystem::remove_all(dir);
  SavePeftAdapters(model, dir, "stories260K");
  nlohmann::json j;
  std::ifstream(dir / "adapter_config.json") >> j;
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 8.0);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["base_model_name_or_path"], "stories260K");
  EXPECT_EQ(j["target_modules"], nlohmann::json({"mlp.gate_proj", "self_attn.v_proj"}));
  const auto st = ReadSafetensors(dir / "adapter_model.safetensors");
  EXPECT_EQ(st.size(), 20u);
  EXPECT_EQ(st.at("base_model.model.model.layers.2.mlp.gate_proj.lora_A.weight").sizes(),
            (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(st.at("base_model.model.model.layers.2.mlp.gate_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{172, 4}));
  EXPECT_EQ(st.at("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{32, 4}));

  Decoder fresh = Stories();
  const LoraConfig back = LoadPeftAdapters(fresh, dir);
  EXPECT_EQ(back.rank, 4);
  EXPECT_DOUBLE_EQ(back.alpha, 8.0);
  torch::NoGradGuard g;
  const at::Tensor ids = at::randint(3, 512, {1, 12}, at::kLong);
  EXPECT_LT((fresh->forward(ids) - model->forward(ids)).abs().max().item<double>(), 1e-6);
  Decoder other = Stories();
  EXPECT_THROW(LoadPeftAdapters(other, dir / "nope"), ConfigError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lifeline::recovery
