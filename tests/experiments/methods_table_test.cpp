// `lifeline report`'s methods x degradations table (methods.*), on recovery
// cells the test makes.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/methods_table.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using nlohmann::json;

CellRow Cell(const std::string& id, const std::string& method, const json& recipe, double ppl_ar, int64_t params) {
  CellRow r;
  r.id = id;
  r.kind = CellKind::kRecovery;
  json full = recipe;
  full["method"] = method;
  full["seed"] = id;  // distinct inputs, so the report keeps every cell
  r.inputs = {{"kind", "recovery"}, {"recipe", full}};
  r.status = CellStatus::kDone;
  r.outputs = {{"metrics",
                {{"perplexity", {{"teacher", 4.2}, {"quantized", 22.0}, {"recovered", 5.0}, {"ar_pct", ppl_ar}}},
                 {"gsm8k.strict_match", {{"teacher", 0.0}, {"quantized", 0.0}, {"recovered", 0.0}, {"ar_pct", nullptr}}}}},
               {"recipe", full},
               {"method", method},
               {"trainable_params", params},
               {"train_tokens", 32768}};
  return r;
}

const json kQuant = {{"degrade", {"quant"}}, {"bits", 2}, {"group", 32}, {"scheme", "asym"},
                     {"layers", {"mlp.gate_proj", "mlp.up_proj"}}, {"data", "synthetic"}};
const json kNoise = {{"degrade", {"noise"}}, {"noise_rel_l2", 0.3}, {"noise_l2", 0.0},
                     {"layers", {"self_attn.k_proj", "self_attn.v_proj"}}, {"data", "synthetic"}};

TEST(MethodsTable, DegradationLabelsNameEachKindWithItsStrength) {
  EXPECT_EQ(DegradationLabel(kQuant), "quant int2 g32 asym");
  EXPECT_EQ(DegradationLabel(kNoise), "noise rel_l2 0.3");
  EXPECT_EQ(DegradationLabel({{"degrade", {"noise", "dtype"}}, {"noise_l2", 1.5}, {"dtype", "fp8-e5m2"}}),
            "noise l2 1.5 + dtype fp8-e5m2");
  EXPECT_EQ(DegradationLabel({{"degrade", {"bitflip"}}, {"bitflip_rate", 1e-5}}), "bitflip rate 1e-05");
}

TEST(MethodsTable, RowsAreOrderedByDegradationThenMethodWithEveryMetricsArPct) {
  std::vector<CellRow> cells = {Cell("c1", "sft-lora", kQuant, 89.0, 75520),
                                Cell("c2", "recover-lora", kNoise, 98.6, 30720),
                                Cell("c3", "llm-qat", kQuant, 93.7, 260032),
                                Cell("c4", "recover-lora", kQuant, 93.5, 75520)};
  std::vector<const CellRow*> ptrs;
  for (const auto& c : cells) ptrs.push_back(&c);
  const auto t = MethodsTable(ptrs);
  ASSERT_TRUE(t.has_value());
  const std::vector<std::string> want_cols = {"degradation",      "layers",       "method",
                                              "data",             "trainable_params", "train_tokens",
                                              "perplexity_ar_pct", "gsm8k.strict_match_ar_pct", "cell"};
  EXPECT_EQ(t->columns, want_cols);
  ASSERT_EQ(t->rows.size(), 4u);
  // noise < quant alphabetically; within quant: recover-lora, llm-qat, sft-lora (the papers' order).
  const std::vector<std::string> want_cells = {"c2", "c4", "c3", "c1"};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(t->rows[i].back().Text(), want_cells[i]) << i;
  EXPECT_EQ(t->rows[1][0].Text(), "quant int2 g32 asym");
  EXPECT_EQ(t->rows[1][1].Text(), "mlp.gate_proj,mlp.up_proj");
  EXPECT_EQ(t->rows[2][2].Text(), "llm-qat");
  EXPECT_EQ(t->rows[2][4].Text(), "260032");
  EXPECT_EQ(t->rows[2][6].Text(), "93.7");
  EXPECT_TRUE(t->rows[2][7].IsEmpty()) << "an undefined AR% stays empty";

  // The report carries it as methods.*.
  const JointReport rep = BuildJointReport(cells, {});
  EXPECT_TRUE(std::any_of(rep.tables.begin(), rep.tables.end(), [](const auto& t) { return t.first == "methods"; }));
}

TEST(MethodsTable, AStoreWithoutThroughputCellsWritesNoParetoPlot) {
  std::vector<CellRow> cells = {Cell("a", "recover-lora", kQuant, 93.5, 75520),
                                Cell("b", "llm-qat", kQuant, 93.7, 260032)};
  testing::TempDir dir("methods_report");
  const auto written = WriteJointReport(BuildJointReport(cells, {}), dir.path() / "out");
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "out" / "methods.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "out" / "recovery.md"));
  for (const auto& f : written) EXPECT_EQ(f.filename().string().rfind("pareto", 0), std::string::npos) << f;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out" / "pareto.csv"));
  std::ifstream in(dir.path() / "out" / "summary.md");
  const std::string summary((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(summary.find("No Pareto plot: the store has no throughput cells"), std::string::npos) << summary;
  EXPECT_NE(summary.find("Tables: recovery, methods."), std::string::npos) << summary;
}

TEST(MethodsTable, OneMethodOnOneDegradationHasNoTable) {
  std::vector<CellRow> cells = {Cell("a", "recover-lora", kQuant, 93.0, 75520),
                                Cell("b", "recover-lora", kQuant, 95.0, 75520)};
  std::vector<const CellRow*> ptrs = {&cells[0], &cells[1]};
  EXPECT_FALSE(MethodsTable(ptrs).has_value());
}

}  // namespace
}  // namespace lifeline::sweep
