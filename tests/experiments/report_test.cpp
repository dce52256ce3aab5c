// The joint report: its throughput numbers equal `lifeline paper`'s for the
// same cells; recovery cells join by plan label; the Pareto plot is written.

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/wait.h>

#include "experiments/paper/paper_report.hpp"
#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/runner.hpp"
#include "common/paths.hpp"
#include "experiments/paper/paper.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;

constexpr const char* kPaperThroughput = R"(
throughput:
  axes:
    model: [qwen3-4b, qwen3-14b, gpt-oss-20b]
    device: [device_a, device_b]
    context: [512, 1024, 2048, 4096, 8192, 16384, 32768]
    plan: [w4, w2, w4w2-gateup]
    fidelity: [paper]
)";

std::vector<std::vector<std::string>> ReadCsv(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    rows.push_back(f);
  }
  return rows;
}

// report CSV (per model: plan, context, tps_<dev>, gain_pct_<dev>, capture_pct_<dev>)
// -> (device, model, context) -> {tps_w4, tps_w2, tps_w4w2_gateup, gain_pct, capture_pct} as printed.
std::map<std::tuple<std::string, std::string, std::string>, std::map<std::string, std::string>> ReportValues(
    const std::filesystem::path& dir, const std::vector<std::string>& models) {
  std::map<std::tuple<std::string, std::string, std::string>, std::map<std::string, std::string>> out;
  for (const auto& model : models) {
    const auto rows = ReadCsv(dir / ("model_" + model + ".csv"));
    EXPECT_FALSE(rows.empty()) << model;
    if (rows.empty()) continue;
    const auto& h = rows[0];
    for (size_t r = 1; r < rows.size(); ++r) {
      const std::string plan = rows[r][0], ctx = rows[r][1];
      const std::string tag = plan == "w4" ? "tps_w4" : plan == "w2" ? "tps_w2" : "tps_w4w2_gateup";
      for (size_t c = 2; c < h.size(); ++c) {
        for (const char* prefix : {"tps_", "gain_pct_", "capture_pct_"}) {
          if (h[c].rfind(prefix, 0) != 0) continue;
          const std::string dev = h[c].substr(std::string(prefix).size());
          auto& m = out[{dev, model, ctx}];
          if (std::string(prefix) == "tps_") m[tag] = rows[r][c];
          if (plan == "w4w2-gateup" && std::string(prefix) == "gain_pct_") m["gain_pct"] = rows[r][c];
          if (plan == "w4w2-gateup" && std::string(prefix) == "capture_pct_") m["capture_pct"] = rows[r][c];
        }
      }
    }
  }
  return out;
}

TEST(Report, ThroughputEqualsPaperCommand) {
  TempDir dir("report_paper");
  Store s(dir / "r.db");
  RunOptions o;
  o.exe = LIFELINE_BINARY;
  RunLocal(s, testing::ParseText(kPaperThroughput), o);
  const JointReport rep = BuildJointReport(s.All(), {});
  WriteJointReport(rep, dir / "report");
  // `lifeline paper`'s rows and its decode_tps.csv writer, in-process.
  std::vector<DeviceSpec> devices;
  for (const auto& d : kPaperDevices) devices.push_back(ResolveDeviceSpec(d));
  std::vector<ModelArch> models;
  for (const auto& m : kPaperModels) models.push_back(ResolveModelArch(m));
  const auto rows = ComputePaperRows(devices, models, kPaperContextsExtended, Fidelity::kPaper);
  reports::WriteFileAtomic(dir / "decode_tps.csv", reports::ToCsv(cli::DecodeTpsTable(rows)));
  const auto paper = ReadCsv(dir / "decode_tps.csv");
  const auto ours = ReportValues(dir / "report", kPaperModels);
  ASSERT_EQ(paper.size(), 43u);
  int compared = 0;
  for (size_t r = 1; r < paper.size(); ++r) {
    const auto& p = paper[r];
    const auto it = ours.find({p[0], p[1], p[2]});
    ASSERT_NE(it, ours.end()) << p[0] << " " << p[1] << " " << p[2];
    const std::vector<std::string> cols = {"tps_w4", "tps_w2", "tps_w4w2_gateup", "gain_pct", "capture_pct"};
    for (size_t c = 0; c < cols.size(); ++c) {
      EXPECT_EQ(it->second.at(cols[c]), p[3 + c]) << p[0] << " " << p[1] << " " << p[2] << " " << cols[c];
      ++compared;
    }
  }
  EXPECT_EQ(compared, 42 * 5);
  // Numbers as doubles too (exactly the same arithmetic).
  for (const auto& row : s.All()) {
    for (const auto& pr : rows) {
      if (pr.device != row.inputs["device"] || pr.model != row.inputs["model"] ||
          pr.context_tokens != row.inputs["context"]) continue;
      const std::string plan = row.inputs["plan"];
      const double want = plan == "w4" ? pr.tps_w4 : plan == "w2" ? pr.tps_w2 : pr.tps_w4w2_gateup;
      EXPECT_EQ(row.outputs["tps"].get<double>(), want);
    }
  }
  for (const char* f : {"model_qwen3-4b.md", "model_qwen3-4b.tex", "model_qwen3-4b.json", "pareto.gp", "summary.md"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "report" / f)) << f;
  }
}

TEST(Report, PaperCommandCsvMatchesThroughCli) {
  TempDir dir("report_cli");
  testing::WriteFile(dir / "m.yaml", kPaperThroughput);
  const std::string bin = LIFELINE_BINARY;
  const std::string cmd = bin + " sweep " + (dir / "m.yaml").string() + " --store " + (dir / "r.db").string() +
                          " > /dev/null && " + bin + " report --store " + (dir / "r.db").string() + " --out " +
                          (dir / "report").string() + " > /dev/null && " + bin + " paper --out " +
                          (dir / "paper").string() + " > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto paper = ReadCsv(dir / "paper" / "decode_tps.csv");
  const auto ours = ReportValues(dir / "report", kPaperModels);
  ASSERT_EQ(paper.size(), 43u);
  for (size_t r = 1; r < paper.size(); ++r) {
    const auto& p = paper[r];
    const auto& m = ours.at({p[0], p[1], p[2]});
    EXPECT_EQ(m.at("tps_w4"), p[3]);
    EXPECT_EQ(m.at("tps_w2"), p[4]);
    EXPECT_EQ(m.at("tps_w4w2_gateup"), p[5]);
    EXPECT_EQ(m.at("gain_pct"), p[6]);
    EXPECT_EQ(m.at("capture_pct"), p[7]);
  }
}

// Recovery rows as `lifeline run-cell` stores them (outputs.metrics is
// recovery.json's), joined to throughput rows by their plan label.
TEST(Report, RecoveryCellsJoinByPlanLabel) {
  std::vector<CellRow> rows;
  auto thr = [&](const std::string& plan, double tps) {
    CellRow r;
    r.id = "t" + plan;
    r.kind = CellKind::kThroughput;
    r.inputs = {{"kind", "throughput"}, {"model", "qwen3-4b"}, {"device", "device_a"}, {"plan", plan},
                {"context", 4096}, {"fidelity", "paper"}, {"fusion", "paper"}, {"batch", 1}};
    r.status = CellStatus::kDone;
    r.outputs = {{"tps", tps}};
    rows.push_back(r);
  };
  thr("w4", 30.0);
  thr("w2", 45.0);
  thr("w4w2-gateup", 36.0);
  thr("w4w3-gateup", 32.0);
  auto rec = [&](const std::string& id, int bits, int rank, double recovered, double ar) {
    CellRow r;
    r.id = id;
    r.kind = CellKind::kRecovery;
    r.inputs = {{"kind", "recovery"}, {"recipe", {{"bits", bits}, {"rank", rank}, {"steps", 10}}}};
    r.labels = {{"model", "stories260k"}, {"plan", "w4w" + std::to_string(bits) + "-gateup"}};
    r.status = CellStatus::kDone;
    r.outputs = {{"metrics",
                  {{"perplexity", {{"teacher", 4.2}, {"quantized", 22.0}, {"recovered", recovered}, {"ar_pct", ar}}},
                   {"top1_agreement", {{"teacher", 1.0}, {"quantized", 0.5}, {"recovered", 0.8}, {"ar_pct", 60.0}}}}},
                 {"timings", {{"total_s", 12.0}}}};
    rows.push_back(r);
  };
  rec("r2a", 2, 4, 6.0, 89.9);
  rec("r2b", 2, 16, 5.0, 95.5);
  rec("r3a", 3, 4, 4.5, 80.0);
  const JointReport rep = BuildJointReport(rows, {});
  ASSERT_EQ(rep.tables.size(), 2u);
  const reports::Table& t = rep.tables[0].second;
  EXPECT_EQ(rep.tables[0].first, "model_qwen3-4b");
  auto col = [&](const std::string& name) {
    return static_cast<size_t>(std::find(t.columns.begin(), t.columns.end(), name) - t.columns.begin());
  };
  ASSERT_LT(col("ppl_ar_pct"), t.columns.size());
  ASSERT_LT(col("top1_agreement_ar_pct"), t.columns.size());
  // Row order: w4, w2, then the others by name.
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[2][0].Text(), "w4w2-gateup");
  EXPECT_EQ(t.rows[2][col("recovery_cell")].Text(), "r2b");  // best AR% of the INT2 cells
  EXPECT_EQ(t.rows[2][col("ppl_recovered")].Text(), "5.0000");
  EXPECT_EQ(t.rows[2][col("gain_pct_device_a")].Text(), "20.000000");
  EXPECT_EQ(t.rows[2][col("capture_pct_device_a")].Text(), "40.000000");
  EXPECT_EQ(t.rows[3][col("recovery_cell")].Text(), "r3a");
  EXPECT_TRUE(t.rows[0][col("recovery_cell")].IsEmpty());
  // Pareto: three points; r2a is dominated by r2b (same gain, higher AR%).
  ASSERT_EQ(rep.pareto.rows.size(), 3u);
  std::map<std::string, std::string> front;
  for (const auto& r : rep.pareto.rows) front[r[2].Text()] = r[6].Text();
  EXPECT_EQ(front["r2a"], "no");
  EXPECT_EQ(front["r2b"], "yes");
  EXPECT_EQ(front["r3a"], "no");  // INT3: less gain and less AR% than r2b
}

}  // namespace
}  // namespace lifeline::sweep
