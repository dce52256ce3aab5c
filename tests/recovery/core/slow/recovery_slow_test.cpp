// A short Recover-LoRA run on stories260K (gate/up INT2 g32): the recovered
// model must close well over half of the perplexity gap. Budget: <= 3 minutes
// on 2 CPU cores.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "recovery/cli/recover_command.hpp"
#include "recovery/model/shared_paths.hpp"
#include "tests/recovery/shared_input.hpp"

namespace lifeline::recovery {
namespace {

TEST(RecoverySlow, ShortRunRecoversMostOfThePerplexityGap) {
  LIFELINE_REQUIRE_SHARED(Stories260kModelPath());
  RecoverRecipe r;  // defaults: INT2 g32 gate/up, LoRA r=32 on gate/up, synthetic data
  r.samples = 128;
  r.sample_len = 128;
  r.steps = 120;
  r.warmup = 10;
  r.eval_limit = 100;
  r.out = (std::filesystem::temp_directory_path() / "lifeline_recovery_slow").string();
  std::filesystem::remove_all(r.out);
  const nlohmann::json j = RunRecovery(r);
  const auto& ppl = j["metrics"]["perplexity"];
  const auto& kl = j["metrics"]["kl_to_teacher"];
  const auto& top1 = j["metrics"]["top1_agreement"];
  std::cout << "perplexity teacher " << ppl["teacher"] << " quantized " << ppl["quantized"]
            << " recovered " << ppl["recovered"] << " AR% " << ppl["ar_pct"] << "\n"
            << "KL AR% " << kl["ar_pct"] << ", top-1 AR% " << top1["ar_pct"] << ", train "
            << j["timings"]["train_s"] << " s, total " << j["timings"]["total_s"] << " s\n";
  ASSERT_FALSE(ppl["ar_pct"].is_null());
  EXPECT_GT(ppl["ar_pct"].get<double>(), 50.0);
  EXPECT_GT(kl["ar_pct"].get<double>(), 30.0);
  EXPECT_GT(top1["ar_pct"].get<double>(), 20.0);
  EXPECT_FALSE(j["training"]["diverged"].get<bool>());
  std::filesystem::remove_all(r.out);
}

}  // namespace
}  // namespace lifeline::recovery
