#include <cmath>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "recovery/cli/recipe.hpp"
#include "recovery/cli/recover_command.hpp"
#include "recovery/model/shared_paths.hpp"
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

TEST(RecoverFlags, DataSkipMinusOneIsRejectedLikeItsYamlKey) {
  // The flag used to reach the data loader unchecked (and crash).
  ExpectHas(RecoverCli("--data text:/nonexistent.txt --data-skip -1 --out /nonexistent/out"),
            {"--data-skip", "data_skip", "-1 is out of range", "from 0"});
  const std::string yaml = ErrorOf([] {
    LoadRecipe(WriteFile("lifeline_recipe_skip.yaml", "data: text:/x.txt\ndata_skip: -1\n"));
  });
  ExpectHas(yaml, {"lifeline_recipe_skip.yaml:2", "data_skip"});
}

TEST(RecoverFlags, NonFiniteAndAbsurdNumbersAreRejectedUpFront) {
  ExpectHas(RecoverCli("--lr nan"), {"--lr", "nan is not a finite number", "<= 1"});
  ExpectHas(RecoverCli("--lr inf"), {"--lr", "inf is not a finite number"});
  ExpectHas(RecoverCli("--lr 1e30"), {"--lr", "1e+30 is out of range", "<= 1"});
  ExpectHas(RecoverCli("--alpha nan"), {"--alpha", "nan is not a finite number"});
  ExpectHas(RecoverCli("--alpha inf"), {"--alpha", "inf is not a finite number"});
  ExpectHas(RecoverCli("--dropout 1.5"), {"--dropout", "[0, 1)"});
  ExpectHas(RecoverCli("--sample-len 100000"), {"--sample-len", "100000 is out of range", "to 65536"});
  ExpectHas(RecoverCli("--threads 100000"),
            {"--threads", "100000 is out of range", fmt::format("to {}", MaxRecipeThreads()).c_str()});
  ExpectHas(RecoverCli("--steps 0"), {"--steps", "0 is out of range"});
  ExpectHas(RecoverCli("--scheme nf4"), {"--scheme", "'nf4' is not supported", "asym, sym"});
  // The same limits hold for recipe keys, with the file and line.
  const std::string yaml = ErrorOf([] { LoadRecipe(WriteFile("lifeline_recipe_lr.yaml", "rank: 4\nlr: 1.0e30\n")); });
  ExpectHas(yaml, {"lifeline_recipe_lr.yaml:2", "'lr'", "out of range"});
  // And for recipes built in code (sweep cells).
  RecoverRecipe r;
  r.threads = 100000;
  ExpectHas(ErrorOf([&] { RunRecovery(r); }), {"recipe: key 'threads'", "100000"});
}

TEST(RecoverFlags, AblationPointsToSweep) {
  ExpectHas(RecoverCli("--ablation some_ablation.yaml"),
            {"--ablation", "lifeline sweep", "experiments/ablations/stories260k_quick.yaml"});
}

TEST(RecoverFlags, NonEmptyOutNeedsOverwriteOrResume) {
  const fs::path out = fs::temp_directory_path() / "lifeline_recover_nonempty";
  fs::remove_all(out);
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "precious\n";
  ExpectHas(RecoverCli("--out " + out.string()),
            {"--out", out.string().c_str(), "already holds files", "--overwrite", "--resume"});
  std::ifstream in(out / "keep.txt");
  std::string kept;
  std::getline(in, kept);
  EXPECT_EQ(kept, "precious");
  // --out naming a file.
  ExpectHas(ErrorOf([&] {
              RecoverRecipe r;
              r.out = (out / "keep.txt").string();
              r.model = "/nonexistent/model.bin";
              RunRecovery(r);
            }),
            {"--out", "not a directory"});
  fs::remove_all(out);
}

TEST(RecoverCommand, EmptyEvalTextIsRefused) {
  LIFELINE_REQUIRE_STORIES260K();
  for (const std::string& text : {std::string(""), std::string("\n  \n\t\n\n")}) {
    RecoverRecipe r = Tiny("lifeline_recover_empty_eval");
    r.eval_text = WriteFile("lifeline_empty_eval.txt", text).string();
    ExpectHas(ErrorOf([&] { RunRecovery(r); }),
              {"lifeline_empty_eval.txt", "eval_text", "no token to predict"});
    EXPECT_FALSE(fs::exists(fs::path(r.out) / "recovery.json"));
    fs::remove_all(r.out);
  }
}

TEST(RecoverCommand, NonFiniteWeightsAreRefusedNamingTheTensor) {
  LIFELINE_REQUIRE_STORIES260K();
  // A copy of stories260K with one NaN among the token embeddings (the
  // first tensor after the 28-byte llama2.c header).
  const fs::path bad = fs::temp_directory_path() / "lifeline_nan_model" / "stories260K.bin";
  fs::create_directories(bad.parent_path());
  fs::copy_file(Stories260kModelPath(), bad, fs::copy_options::overwrite_existing);
  fs::copy_file(Stories260kTokenizerPath(), bad.parent_path() / "tok512.bin", fs::copy_options::overwrite_existing);
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(28 + 4 * 100);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    f.write(reinterpret_cast<const char*>(&nan), 4);
  }
  RecoverRecipe r = Tiny("lifeline_recover_nan");
  r.model = bad.string();
  ExpectHas(ErrorOf([&] { RunRecovery(r); }),
            {"stories260K.bin", "non-finite weights", "tensor 'model.embed_tokens.weight' (1 of 32768 values)"});
  fs::remove_all(bad.parent_path());
  fs::remove_all(r.out);
}

TEST(RecoverCommand, SampleLenBeyondTheModelContextIsRefused) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_recover_ctx");
  r.sample_len = 4096;  // stories260K has a 512-token context
  ExpectHas(ErrorOf([&] { RunRecovery(r); }), {"--sample-len", "4096 tokens exceed", "at most 512"});
  fs::remove_all(r.out);
}

TEST(RecoverCommand, ResumeRefusesAChangedRecipe) {
  LIFELINE_REQUIRE_STORIES260K();
  RecoverRecipe r = Tiny("lifeline_recover_resume");
  r.steps = 4;
  r.checkpoint_every = 2;
  RunRecovery(r);
  ASSERT_TRUE(fs::exists(fs::path(r.out) / "recipe_fingerprint.json"));
  RecoverRecipe changed = r;
  changed.resume = true;
  changed.bits = 3;
  changed.seed = 7;
  changed.threads = 2;  // where it runs is not part of the fingerprint
  ExpectHas(ErrorOf([&] { RunRecovery(changed); }),
            {"--resume", "the recipe changed", "bits (2 -> 3)", "seed (0 -> 7)"});
  // The same recipe resumes (from the final checkpoint: no step left).
  RecoverRecipe same = r;
  same.resume = true;
  const nlohmann::json j = RunRecovery(same);
  EXPECT_EQ(j["training"]["start_step"], 4);
  fs::remove_all(r.out);
}

}  // namespace
}  // namespace lifeline::recovery
