#include <fstream>

#include <gtest/gtest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "recovery/cli/recipe.hpp"
#include "recovery/cli/recover_command.hpp"
#include "common/error.hpp"
#include "test_util.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;

fs::path WriteFile(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / name;
  std::ofstream(p) << text;
  return p;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Recipe, LoadsKeysAndRejectsUnknownOnes) {
  const auto p = WriteFile("lifeline_recipe_ok.yaml",
                           "bits: 3\ngroup: 64\nlayers: [mlp.gate_proj]\nrank: 8\n"
                           "lora_targets: self_attn.q_proj, self_attn.v_proj\nlr: 0.001\n"
                           "walk_vocab: true\ntasks: [piqa]\nout: /tmp/x\n");
  const RecoverRecipe r = LoadRecipe(p);
  EXPECT_EQ(r.bits, 3);
  EXPECT_EQ(r.group, 64);
  EXPECT_EQ(r.layers, std::vector<std::string>{"mlp.gate_proj"});
  EXPECT_EQ(r.LoraTargets(), (std::vector<std::string>{"self_attn.q_proj", "self_attn.v_proj"}));
  EXPECT_EQ(r.rank, 8);
  EXPECT_DOUBLE_EQ(r.lr, 1e-3);
  EXPECT_TRUE(r.walk_vocab);
  EXPECT_EQ(r.steps, RecoverRecipe{}.steps);  // untouched default
  const nlohmann::json j = RecipeToJson(r);
  EXPECT_EQ(j.size(), RecipeKeys().size());

  const std::string unknown = ErrorOf([] {
    LoadRecipe(WriteFile("lifeline_recipe_bad.yaml", "bits: 2\nrnak: 8\n"));
  });
  EXPECT_NE(unknown.find("lifeline_recipe_bad.yaml:2"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("rnak"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("rank"), std::string::npos) << unknown;  // did you mean
  const std::string type = ErrorOf([] {
    LoadRecipe(WriteFile("lifeline_recipe_type.yaml", "steps: many\n"));
  });
  EXPECT_NE(type.find("lifeline_recipe_type.yaml:1"), std::string::npos) << type;
  EXPECT_NE(type.find("steps"), std::string::npos) << type;
  EXPECT_FALSE(ErrorOf([] { LoadRecipe(WriteFile("lifeline_recipe_bits.yaml", "bits: 5\n")); }).empty());
}

RecoverRecipe Tiny(const std::string& out) {
  RecoverRecipe r;
  r.samples = 8;
  r.sample_len = 32;
  r.gen_batch = 8;
  r.steps = 6;
  r.batch = 4;
  r.warmup = 2;
  r.rank = 4;
  r.alpha = 8;
  r.eval_limit = 6;
  r.threads = 1;
  r.out = (fs::temp_directory_path() / out).string();
  fs::remove_all(r.out);
  return r;
}

TEST(RecoverCommand, EndToEndWritesRecoveryJsonAndAdapters) {
  LIFELINE_REQUIRE_STORIES260K();
  const RecoverRecipe r = Tiny("lifeline_recover_e2e");
  const nlohmann::json j = RunRecovery(r);
  const fs::path out = r.out;
  ASSERT_TRUE(fs::exists(out / "recovery.json"));
  ASSERT_TRUE(fs::exists(out / "adapters" / "adapter_config.json"));
  ASSERT_TRUE(fs::exists(out / "adapters" / "adapter_model.safetensors"));
  ASSERT_TRUE(fs::exists(out / "train_data.bin"));
  nlohmann::json disk;
  std::ifstream(out / "recovery.json") >> disk;
  EXPECT_EQ(disk, j);
  for (const char* m : {"perplexity", "kl_to_teacher", "top1_agreement"}) {
    ASSERT_TRUE(j["metrics"].contains(m)) << m;
    for (const char* k : {"teacher", "quantized", "recovered", "ar_pct"}) {
      EXPECT_TRUE(j["metrics"][m].contains(k)) << m << "." << k;
    }
  }
  const auto& ppl = j["metrics"]["perplexity"];
  EXPECT_GT(ppl["quantized"].get<double>(), ppl["teacher"].get<double>());
  EXPECT_DOUBLE_EQ(j["metrics"]["kl_to_teacher"]["teacher"].get<double>(), 0.0);
  EXPECT_EQ(j["quantization"]["layers"].size(), 10u);
  EXPECT_EQ(j["training"]["steps_done"], 6);
  EXPECT_EQ(j["recipe"]["rank"], 4);
  EXPECT_TRUE(j["timings"].contains("train_s"));
  EXPECT_TRUE(j["seeds"].contains("seed"));
  fs::remove_all(out);
}

TEST(RecoverCommand, BadInputsAreConfigErrors) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_recover_bad");
  r.model = "/nonexistent/model.bin";
  EXPECT_NE(ErrorOf([&] { RunRecovery(r); }).find("not found"), std::string::npos);
  r = Tiny("lifeline_recover_bad");
  r.layers = {"mlp.gate"};
  EXPECT_NE(ErrorOf([&] { RunRecovery(r); }).find("matches no linear layer"), std::string::npos);
  r = Tiny("lifeline_recover_bad");
  r.group = 48;
  EXPECT_NE(ErrorOf([&] { RunRecovery(r); }).find("does not divide"), std::string::npos);
  r = Tiny("lifeline_recover_bad");
  r.rank = 100;
  EXPECT_NE(ErrorOf([&] { RunRecovery(r); }).find("rank 100"), std::string::npos);
  r = Tiny("lifeline_recover_bad");
  r.data = "wikipedia";
  EXPECT_FALSE(ErrorOf([&] { RunRecovery(r); }).empty());
  // A valid llama2.c tokenizer with 300 tokens, for a 512-token model.
  const fs::path tok = fs::temp_directory_path() / "lifeline_tok300.bin";
  {
    std::ofstream out(tok, std::ios::binary);
    const int32_t max_len = 6;
    out.write(reinterpret_cast<const char*>(&max_len), 4);
    for (int i = 0; i < 300; ++i) {
      std::string s = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>"
                    : i < 259 ? fmt::format("<0x{:02X}>", i - 3) : fmt::format("t{}", i);
      const float score = 0;
      const int32_t len = static_cast<int32_t>(s.size());
      out.write(reinterpret_cast<const char*>(&score), 4);
      out.write(reinterpret_cast<const char*>(&len), 4);
      out.write(s.data(), len);
    }
  }
  r = Tiny("lifeline_recover_bad");
  r.tokenizer = tok.string();
  const std::string msg = ErrorOf([&] { RunRecovery(r); });
  EXPECT_NE(msg.find("vocabulary"), std::string::npos) << msg;
  fs::remove(tok);
  fs::remove_all(r.out);
}

TEST(RecoverCommand, AblationWritesTables) {
  LIFELINE_REQUIRE_STORIES260K();
  const auto file = WriteFile("lifeline_ablation.yaml",
                              "base: {steps: 4, samples: 8, sample_len: 32, gen_batch: 8, batch: 4,"
                              " warmup: 1, eval_limit: 4, threads: 1}\n"
                              "runs:\n  - name: r2\n    rank: 2\n  - name: r4\n    rank: 4\n"
                              "    lora_targets: [mlp.up_proj]\n");
  const fs::path out = fs::temp_directory_path() / "lifeline_ablation_out";
  fs::remove_all(out);
  const nlohmann::json s = RunAblation(file, RecoverRecipe{}, out.string());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(fs::exists(out / "r2" / "recovery.json"));
  EXPECT_TRUE(fs::exists(out / "r4" / "recovery.json"));
  std::ifstream md(out / "ablation.md");
  const std::string table((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(table.find("| r4 | lora_targets=[mlp.up_proj] rank=4 |"), std::string::npos) << table;
  nlohmann::json r4;
  std::ifstream(out / "r4" / "recovery.json") >> r4;
  EXPECT_EQ(r4["training"]["adapted_layers"].size(), 5u);
  // Unknown keys in a run are rejected with the run's path.
  const auto bad = WriteFile("lifeline_ablation_bad.yaml", "runs:\n  - name: x\n    rnak: 2\n");
  const std::string msg = ErrorOf([&] { RunAblation(bad, RecoverRecipe{}, out.string()); });
  EXPECT_NE(msg.find("runs[0]"), std::string::npos) << msg;
  fs::remove_all(out);
}

}  // namespace
}  // namespace lifeline::recovery
