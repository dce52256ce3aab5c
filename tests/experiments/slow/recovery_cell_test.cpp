// LibTorch builds only: a tiny recovery cell run by `lifeline sweep` (child
// process `lifeline run-cell`) gives the same metrics as `lifeline recover`
// run alone with the same recipe, and `lifeline report` shows them.

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <utility>

#include <fmt/format.h>
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

// Runs `lifeline sweep DIR/m.yaml` into DIR/r.db; the one cell it makes, when
// that cell finished (a test failure otherwise).
std::optional<CellRow> SweepOneCell(const std::filesystem::path& dir) {
  std::string out;
  if (RunCapture({LIFELINE_BINARY, "sweep", (dir / "m.yaml").string(), "--store", (dir / "r.db").string()}, &out) !=
      0) {
    ADD_FAILURE() << out;
    return std::nullopt;
  }
  const auto rows = Store(dir / "r.db").All();
  if (rows.size() != 1u || rows[0].status != CellStatus::kDone) {
    ADD_FAILURE() << rows.size() << " cells; " << (rows.empty() ? "" : rows[0].error);
    return std::nullopt;
  }
  return rows[0];
}

// `lifeline report` of DIR/r.db: the header and the first row of recovery.csv.
std::pair<std::string, std::string> ReportedRecoveryRow(const std::filesystem::path& dir) {
  std::string out;
  if (RunCapture({LIFELINE_BINARY, "report", "--store", (dir / "r.db").string(), "--out", (dir / "report").string()},
                 &out) != 0)
    ADD_FAILURE() << out;
  std::ifstream csv(dir / "report" / "recovery.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  return {header, row};
}

// A value as the report prints it.
std::string FourDecimals(double v) { return fmt::format("{:.4f}", v); }

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
  const std::optional<CellRow> cell = SweepOneCell(dir.path());
  ASSERT_TRUE(cell.has_value());
  EXPECT_EQ(cell->seed, 3);
  EXPECT_FALSE(cell->checksums.empty());

  std::string out;
  ASSERT_EQ(RunCapture({LIFELINE_BINARY, "recover", "--recipe", (dir / "recipe.yaml").string(), "--out",
                        (dir / "alone").string()},
                       &out),
            0)
      << out;
  std::ifstream in(dir / "alone" / "recovery.json");
  const nlohmann::json alone = nlohmann::json::parse(in);
  const nlohmann::json& a = alone.at("metrics");
  const nlohmann::json& b = cell->outputs.at("metrics");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [metric, v] : a.items()) {
    for (const char* k : {"teacher", "quantized", "recovered"}) {
      EXPECT_DOUBLE_EQ(v.at(k).get<double>(), b.at(metric).at(k).get<double>()) << metric << "." << k;
    }
  }
  const auto [header, row] = ReportedRecoveryRow(dir.path());
  EXPECT_NE(row.find(cell->id), std::string::npos) << row;
  const std::string recovered = FourDecimals(a.at("perplexity").at("recovered").get<double>());
  EXPECT_NE(row.find(recovered), std::string::npos) << row << " lacks " << recovered;
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
  const std::optional<CellRow> cell = SweepOneCell(dir.path());
  ASSERT_TRUE(cell.has_value());
  EXPECT_EQ(cell->outputs.at("method"), "sft-lora");
  const nlohmann::json& deploy = cell->outputs.at("deploy");
  EXPECT_EQ(deploy.at("plan"), "stories260k-w4w2-gateup");
  for (const char* v : {"as_trained", "attached", "merged"}) {
    ASSERT_TRUE(deploy.at("variants").contains(v)) << v;
    EXPECT_FALSE(deploy["variants"][v].contains("weights")) << v;
    EXPECT_TRUE(deploy["variants"][v].at("metrics").at("perplexity").at("recovered").is_number()) << v;
  }
  EXPECT_EQ(cell->checksums.count(plan), 1u) << "the plan file's SHA-256 is recorded with the cell";

  const auto [header, row] = ReportedRecoveryRow(dir.path());
  EXPECT_NE(header.find("deploy_attached_ppl_ar_pct"), std::string::npos) << header;
  EXPECT_NE(row.find("stories260k-w4w2-gateup"), std::string::npos) << row;
  const std::string merged =
      FourDecimals(deploy["variants"]["merged"]["metrics"]["perplexity"]["recovered"].get<double>());
  EXPECT_NE(row.find(merged), std::string::npos) << row << " lacks " << merged;
}

}  // namespace
}  // namespace lifeline::sweep
