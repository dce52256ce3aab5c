// The local runner: runs every cell once, skips finished cells on rerun,
// records failures and infeasible cells and goes on.

#include <gtest/gtest.h>

#include "experiments/sweep/cell_exec.hpp"
#include "experiments/sweep/runner.hpp"
#include "experiments/paper/paper.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;
using testing::WriteFile;

RunOptions Opts() {
  RunOptions o;
  o.threads = 2;
  o.exe = LIFELINE_BINARY;
  return o;
}

TEST(Runner, RunsOnceAndResumes) {
  TempDir dir("runner_resume");
  const Matrix m = testing::ParseText(R"(
throughput:
  axes:
    model: [qwen3-4b, qwen3-14b, gpt-oss-20b]
    device: [device_a, device_b]
    context: [512, 1024, 2048, 4096, 8192, 16384, 32768]
    plan: [w4, w2, w4w2-gateup]
)");
  Store s(dir / "r.db");
  RunOptions o = Opts();
  o.chunk = 10;  // several claim/record transactions
  const RunSummary first = RunLocal(s, m, o);
  EXPECT_EQ(first.total, 126);
  EXPECT_EQ(first.ran, 126);
  EXPECT_EQ(first.done, 126);
  const RunSummary again = RunLocal(s, m, o);
  EXPECT_EQ(again.ran, 0);
  EXPECT_EQ(again.skipped, 126);
  // Outputs are the roofline's numbers for the cell.
  for (const auto& row : s.All()) {
    const auto& in = row.inputs;
    const double expect = DecodeTps(ResolveModelArch(in["model"]), in["plan"], ResolveDeviceSpec(in["device"]),
                                    in["context"], Fidelity::kPaper);
    EXPECT_EQ(row.outputs["tps"].get<double>(), expect) << row.id;
    EXPECT_EQ(row.attempts, 1);
    EXPECT_EQ(row.checksums.size(), 2u);  // model and device files
  }
}

TEST(Runner, InfeasibleAndFailedCellsAreRecordedAndTheSweepGoesOn) {
  TempDir dir("runner_errors");
  // A 4 GB device: qwen3-4b at W4 fits (~2.3 GB of weights), qwen3-14b does not.
  std::string dev = "name: small\ndescription: test\nint8_tops: 50\nmemory_bandwidth_gb_per_s: 100\n"
                    "memory_capacity_gb: 4\nefficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25,\n"
                    "  moe_expert_compute_int2: 0.004, moe_expert_compute_int4: 0.004}\n";
  WriteFile(dir / "small.yaml", dev);
  // A plan whose group size does not divide qwen3-4b's hidden size (2560).
  WriteFile(dir / "bad_plan.yaml", "name: bad\nrules:\n  - pattern: \"*\"\n    bits: 4\n    group_size: 3000\n");
  WriteFile(dir / "m.yaml", R"(
throughput:
  axes:
    model: [qwen3-4b, qwen3-14b]
    device: [small.yaml]
    context: [4096]
    plan: [w4, bad_plan.yaml]
)");
  const Matrix m = LoadMatrix(dir / "m.yaml");
  Store s(dir / "r.db");
  const RunSummary r = RunLocal(s, m, Opts());
  EXPECT_EQ(r.ran, 4);
  EXPECT_EQ(r.done, 1);
  EXPECT_EQ(r.infeasible, 1);
  EXPECT_EQ(r.failed, 2);
  for (const auto& row : s.All()) {
    const bool bad_plan = row.inputs["plan"].get<std::string>().find("bad_plan") != std::string::npos;
    if (bad_plan) {
      EXPECT_EQ(row.status, CellStatus::kFailed);
      EXPECT_NE(row.error.find("group"), std::string::npos) << row.error;
    } else if (row.inputs["model"] == "qwen3-14b") {
      EXPECT_EQ(row.status, CellStatus::kInfeasible);
      EXPECT_NE(row.error.find("needs"), std::string::npos) << row.error;
      EXPECT_NE(row.error.find("has 4.000 GB"), std::string::npos) << row.error;
      EXPECT_GT(row.outputs["footprint_bytes"].get<double>(), 4e9);
    } else {
      EXPECT_EQ(row.status, CellStatus::kDone);
      EXPECT_LT(row.outputs["footprint_bytes"].get<double>(), 4e9);
    }
  }
  // Rerun: infeasible cells stay, failed ones are retried (and fail again).
  const RunSummary again = RunLocal(s, m, Opts());
  EXPECT_EQ(again.ran, 2);
  EXPECT_EQ(again.failed, 2);
  RunOptions keep = Opts();
  keep.retry_failed = false;
  EXPECT_EQ(RunLocal(s, m, keep).ran, 0);
}

TEST(Runner, RecoveryCellRunsInAChildProcess) {
  if (RecoveryCellsAvailable()) GTEST_SKIP() << "LibTorch build: recovery cells are exercised by the slow tests";
  TempDir dir("runner_recovery");
  const Matrix m = testing::ParseText("recovery:\n  fixed: {steps: 1}\n");
  Store s(dir / "r.db");
  const RunSummary r = RunLocal(s, m, Opts());
  EXPECT_EQ(r.failed, 1);
  const CellRow row = s.All().at(0);
  EXPECT_EQ(row.status, CellStatus::kFailed);
  EXPECT_NE(row.error.find("recovery cells need the LibTorch build"), std::string::npos) << row.error;
  EXPECT_TRUE(std::filesystem::exists(CellWorkDir(s.path(), row.id) / "run-cell.log"));
}

}  // namespace
}  // namespace lifeline::sweep
