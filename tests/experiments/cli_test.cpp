// `lifeline sweep`, `run-cell` and `report` as a user runs them.

#include <gtest/gtest.h>

#include "experiments/sweep/slurm.hpp"
#include "experiments/sweep/store.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;
using testing::WriteFile;

int Lifeline(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {LIFELINE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  out->clear();
  return RunCapture(argv, out);
}

TEST(SweepCli, DryRunListsCellsAndWhatIsDone) {
  TempDir dir("cli_dry");
  WriteFile(dir / "m.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024, 4096]\n"
            "    plan: [w4]\n");
  const std::string db = (dir / "r.db").string();
  std::string out;
  ASSERT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db, "--dry-run"}, &out), 0) << out;
  EXPECT_NE(out.find("2 cells: 2 new"), std::string::npos) << out;
  EXPECT_NE(out.find("qwen3-4b device_a w4 ctx=4096"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(db));  // a dry run writes nothing
  ASSERT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db}, &out), 0) << out;
  EXPECT_NE(out.find("ran 2 (2 done, 0 infeasible, 0 failed)"), std::string::npos) << out;
  ASSERT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db, "--dry-run"}, &out), 0) << out;
  EXPECT_NE(out.find("2 cells: 2 done"), std::string::npos) << out;
  // run-cell on a finished cell leaves it alone; --force reruns it.
  Store s(db);
  const std::string id = s.All().at(0).id;
  ASSERT_EQ(Lifeline({"run-cell", "--store", db, "--cell", id}, &out), 0) << out;
  EXPECT_NE(out.find("is done; nothing to do"), std::string::npos) << out;
  ASSERT_EQ(Lifeline({"run-cell", "--store", db, "--cell", id, "--force"}, &out), 0) << out;
  EXPECT_EQ(s.Get(id)->attempts, 2);
  EXPECT_EQ(s.Get(id)->status, CellStatus::kDone);
}

TEST(SweepCli, BadInputsFailWithClearErrors) {
  TempDir dir("cli_bad");
  WriteFile(dir / "bad.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    devices: [device_a]\n    context: [1024]\n"
            "    plan: [w4]\n");
  std::string out;
  EXPECT_EQ(Lifeline({"sweep", (dir / "bad.yaml").string(), "--dry-run"}, &out), 2);
  EXPECT_NE(out.find("error: " + (dir / "bad.yaml").string() + ":4:5"), std::string::npos) << out;
  EXPECT_NE(out.find("did you mean 'device'"), std::string::npos) << out;
  EXPECT_EQ(Lifeline({"run-cell", "--store", (dir / "none.db").string(), "--cell", "x"}, &out), 2);
  EXPECT_NE(out.find("no such results store"), std::string::npos) << out;
  EXPECT_EQ(Lifeline({"report", "--store", (dir / "none.db").string()}, &out), 2);
  WriteFile(dir / "ok.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n    plan: [w4]\n");
  ASSERT_EQ(Lifeline({"sweep", (dir / "ok.yaml").string(), "--store", (dir / "r.db").string()}, &out), 0) << out;
  EXPECT_EQ(Lifeline({"run-cell", "--store", (dir / "r.db").string(), "--cell", "0123456789abcdef"}, &out), 2);
  EXPECT_NE(out.find("no cell '0123456789abcdef'"), std::string::npos) << out;
}

TEST(SweepCli, SlurmScriptRunsTheCellList) {
  SlurmOptions o;
  o.exe = "/opt/lifeline";
  o.cells_per_task = 4;
  o.max_parallel = 2;
  o.sbatch_args = {"--partition=cpu"};
  const std::string s = SbatchScript("lifeline-paper", "/data/r.db", "/data/slurm/cells-1.txt", "/data/slurm/logs", o, 3);
  for (const char* want : {"#SBATCH --array=0-2%2", "#SBATCH --partition=cpu", "#SBATCH --output=/data/slurm/logs/%A_%a.out",
                           "CELLS='/data/slurm/cells-1.txt'", "K=4", "exec '/opt/lifeline' run-cell --store '/data/r.db'"}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }
}

}  // namespace
}  // namespace lifeline::sweep
