// LibTorch builds only: a tiny recovery cell run by `lifeline sweep` (child
// process `lifeline run-cell`) gives the same metrics as `lifeline recover`
// run alone with the same recipe, and `lifeline report` shows them.

#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "experiments/sweep/slurm.hpp"
#include "experiments/sweep/store.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;
using testing::WriteFile;

// Small enough for seconds on 2 cores; one thread so both runs are bitwise
// reproducible.
constexpr const char* kRecipe =
    "bits: 2\ngroup: 32\nrank: 4\nsamples: 16\nsample_len: 64\nsteps: 4\nbatch: 4\nwarmup: 1\n"
    "eval_limit: 8\nthreads: 1\nseed: 3\n";

TEST(RecoveryCell, SweepEqualsRecoverRunAlone) {
  TempDir dir("recovery_cell");
  std::string fixed;
  for (size_t pos = 0; pos < std::string(kRecipe).size();) {
    const std::string r = kRecipe;
    const size_t nl = r.find('\n', pos);
    fixed += "    " + r.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  WriteFile(dir / "m.yaml", "recovery:\n  report: {model: stories260k, plan: \"w4w{bits}-gateup\"}\n  fixed:\n" + fixed);
  WriteFile(dir / "recipe.yaml", kRecipe);
  const std::string bin = LIFELINE_BINARY;
  std::string out;
  ASSERT_EQ(RunCapture({bin, "sweep", (dir / "m.yaml").string(), "--store", (dir / "r.db").string()}, &out), 0)
      << out;
  Store s(dir / "r.db");
  const auto rows = s.All();
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].status, CellStatus::kDone) << rows[0].error;
  EXPECT_EQ(rows[0].seed, 3);
  EXPECT_FALSE(rows[0].checksums.empty());

  out.clear();
  ASSERT_EQ(RunCapture({bin, "recover", "--recipe", (dir / "recipe.yaml").string(), "--out", (dir / "alone").string()},
                       &out),
            0)
      << out;
  std::ifstream in(dir / "alone" / "recovery.json");
  const nlohmann::json alone = nlohmann::json::parse(in);
  const nlohmann::json& a = alone.at("metrics");
  const nlohmann::json& b = rows[0].outputs.at("metrics");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [metric, v] : a.items()) {
    for (const char* k : {"teacher", "quantized", "recovered"}) {
      EXPECT_DOUBLE_EQ(v.at(k).get<double>(), b.at(metric).at(k).get<double>()) << metric << "." << k;
    }
  }
  out.clear();
  ASSERT_EQ(RunCapture({bin, "report", "--store", (dir / "r.db").string(), "--out", (dir / "report").string()}, &out),
            0)
      << out;
  std::ifstream csv(dir / "report" / "recovery.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  EXPECT_NE(row.find(rows[0].id), std::string::npos) << row;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4f", a.at("perplexity").at("recovered").get<double>());
  EXPECT_NE(row.find(buf), std::string::npos) << row << " lacks " << buf;
}

// A cell with a deployment plan and another method: the store keeps the
// deployed variants' metrics (without recovery.json's per-weight lists) and the
// plan file's digest, and the report's recovery table shows them.
TEST(RecoveryCell, DeployedVariantsReachTheStoreAndTheReport) {
  TempDir dir("recovery_cell_deploy");
  const std::string plan = std::string(LIFELINE_SOURCE_TREE) + "/experiments/plans/stories260k_w4w2_gateup.yaml";
  WriteFile(dir / "m.yaml",
            "recovery:\n  report: {model: stories260k, plan: w4w2-gateup}\n  fixed:\n"
            "    {rank: 4, samples: 16, sample_len: 32, steps: 3, batch: 4, warmup: 1, eval_limit: 4, threads: 1,\n"
            "     method: sft-lora, deploy_plan: \"" +
                plan + "\"}\n");
  const std::string bin = LIFELINE_BINARY;
  std::string out;
  ASSERT_EQ(RunCapture({bin, "sweep", (dir / "m.yaml").string(), "--store", (dir / "r.db").string()}, &out), 0)
      << out;
  Store s(dir / "r.db");
  const auto rows = s.All();
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].status, CellStatus::kDone) << rows[0].error;
  EXPECT_EQ(rows[0].outputs.at("method"), "sft-lora");
  const nlohmann::json& deploy = rows[0].outputs.at("deploy");
  EXPECT_EQ(deploy.at("plan"), "stories260k-w4w2-gateup");
  for (const char* v : {"as_trained", "attached", "merged"}) {
    ASSERT_TRUE(deploy.at("variants").contains(v)) << v;
    EXPECT_FALSE(deploy["variants"][v].contains("weights")) << v;
    EXPECT_TRUE(deploy["variants"][v].at("metrics").at("perplexity").at("recovered").is_number()) << v;
  }
  EXPECT_EQ(rows[0].checksums.count(plan), 1u) << "the plan file's SHA-256 is recorded with the cell";

  out.clear();
  ASSERT_EQ(RunCapture({bin, "report", "--store", (dir / "r.db").string(), "--out", (dir / "report").string()}, &out),
            0)
      << out;
  std::ifstream csv(dir / "report" / "recovery.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  EXPECT_NE(header.find("deploy_attached_ppl_ar_pct"), std::string::npos) << header;
  EXPECT_NE(row.find("stories260k-w4w2-gateup"), std::string::npos) << row;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4f",
                deploy["variants"]["merged"]["metrics"]["perplexity"]["recovered"].get<double>());
  EXPECT_NE(row.find(buf), std::string::npos) << row << " lacks " << buf;
}

}  // namespace
}  // namespace lifeline::sweep
