// Sweeps under faults and bad input: concurrent runners dying, input files
// edited between runs, read-only and misplaced stores, report flags naming
// nothing in the store, failed cells and the exit status.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "common/error.hpp"
#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/runner.hpp"
#include "experiments/sweep/sha256.hpp"
#include "experiments/sweep/slurm.hpp"
#include "experiments/sweep/store.hpp"
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

int Lifeline(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {LIFELINE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  out->clear();
  return RunCapture(argv, out);
}

bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

constexpr const char* kSmallDevice =
    "name: small\ndescription: test\nint8_tops: 50\nmemory_bandwidth_gb_per_s: 100\n"
    "efficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25,\n"
    "  moe_expert_compute_int2: 0.004, moe_expert_compute_int4: 0.004}\n";

std::string FasterDevice() {
  std::string d = kSmallDevice;
  return d.replace(d.find("100"), 3, "150");
}


// Another runner holds cells: this one waits for them, and when that runner
// dies (kill -9: its pid is gone) runs its cells instead of leaving them
// `running`.
TEST(Runner, ReclaimsTheCellsOfARunnerThatDiesWhileThisOneRuns) {
  TempDir dir("runner_reclaim");
  const Matrix m = testing::ParseText(R"(
throughput:
  axes:
    model: [qwen3-4b]
    device: [device_a, device_b]
    context: [1024, 4096]
    plan: [w4, w2]
)");
  Store s(dir / "r.db");
  s.AddCells(m.cells);
  // The other runner: a live process on this host holding two cells.
  const pid_t other = fork();
  if (other == 0) {
    for (;;) pause();
  }
  Owner them = Owner::Self();
  them.pid = other;
  them.token = "other-runner";
  ASSERT_EQ(s.Claim({m.cells[0].id, m.cells[1].id}, them, {CellStatus::kPending}).size(), 2u);
  // It is killed while this runner is live.
  std::thread killer([other] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    kill(other, SIGKILL);
    waitpid(other, nullptr, 0);
  });
  RunOptions o = Opts();
  o.poll_s = 0.05;
  const RunSummary r = RunLocal(s, m, o);
  killer.join();
  EXPECT_EQ(r.ran, 8);
  EXPECT_EQ(r.done, 8);
  EXPECT_EQ(r.reclaimed, 2);
  EXPECT_EQ(r.unfinished, 0);
  for (const auto& row : s.All()) {
    EXPECT_EQ(row.status, CellStatus::kDone) << row.id;
    EXPECT_EQ(row.owner, Owner::Self().Text()) << row.id;
  }
}

// Cells a live runner holds and finishes are waited for, not run twice.
TEST(Runner, WaitsForCellsALiveRunnerFinishes) {
  TempDir dir("runner_wait");
  const Matrix m = testing::ParseText(R"(
throughput:
  axes:
    model: [qwen3-4b]
    device: [device_a]
    context: [1024, 4096]
    plan: [w4]
)");
  Store s(dir / "r.db");
  s.AddCells(m.cells);
  Owner them = Owner::Self();
  them.pid = getppid();  // alive for the whole test
  them.token = "live-runner";
  ASSERT_EQ(s.Claim({m.cells[0].id}, them, {CellStatus::kPending}).size(), 1u);
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Store other(dir / "r.db");
    CellResult res;
    res.outputs = {{"tps", 1.0}};
    other.Finish({{m.cells[0].id, res}}, them);
  });
  RunOptions o = Opts();
  o.poll_s = 0.05;
  const RunSummary r = RunLocal(s, m, o);
  finisher.join();
  EXPECT_EQ(r.ran, 1);
  EXPECT_EQ(r.elsewhere, 1);
  EXPECT_EQ(r.reclaimed, 0);
  EXPECT_EQ(s.Get(m.cells[0].id)->owner, them.Text());
  EXPECT_EQ(s.Get(m.cells[0].id)->attempts, 1);
}

// A cell whose model/device file changed after the cell was made fails with
// the file named (a Slurm task or run-cell may run it long after the sweep
// expanded it).
TEST(Runner, CellFailsWhenItsInputFileChangedSinceItWasMade) {
  TempDir dir("runner_changed");
  const std::string dev =
      "name: small\ndescription: test\nint8_tops: 50\nmemory_bandwidth_gb_per_s: 100\n"
      "efficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25,\n"
      "  moe_expert_compute_int2: 0.004, moe_expert_compute_int4: 0.004}\n";
  WriteFile(dir / "small.yaml", dev);
  WriteFile(dir / "m.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [small.yaml]\n    context: [1024]\n"
            "    plan: [w4]\n");
  const Matrix before = LoadMatrix(dir / "m.yaml");
  WriteFile(dir / "small.yaml", std::string(dev).replace(dev.find("100"), 3, "150"));
  Store s(dir / "r.db");
  const RunSummary r = RunLocal(s, before, Opts());
  EXPECT_EQ(r.failed, 1);
  const std::string err = s.Get(before.cells[0].id)->error;
  EXPECT_NE(err.find("device file " + (dir / "small.yaml").string() + " changed after this cell was made"),
            std::string::npos)
      << err;
  // Rerunning the sweep makes the new cell, which runs; the old one stays as it was.
  const Matrix after = LoadMatrix(dir / "m.yaml");
  const RunSummary again = RunLocal(s, after, Opts());
  EXPECT_EQ(again.ran, 1);
  EXPECT_EQ(again.done, 1);
  EXPECT_EQ(again.skipped, 0);
  EXPECT_EQ(s.All().size(), 2u);
}

// A sweep rerun after a device file changed runs a new cell (not "1 already
// finished"), and the report shows the new result, counting the old one as
// superseded.
TEST(SweepRerun, AfterAnInputFileChangedRunsTheNewCellAndReportsIt) {
  TempDir dir("sweep_changed");
  WriteFile(dir / "small.yaml", kSmallDevice);
  WriteFile(dir / "m.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [small.yaml]\n    context: [1024]\n"
            "    plan: [w4]\n");
  Store s(dir / "r.db");
  ASSERT_EQ(RunLocal(s, LoadMatrix(dir / "m.yaml"), Opts()).done, 1);
  const double old_tps = s.All().at(0).outputs["tps"].get<double>();
  WriteFile(dir / "small.yaml", FasterDevice());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later created_at
  const RunSummary again = RunLocal(s, LoadMatrix(dir / "m.yaml"), Opts());
  EXPECT_EQ(again.skipped, 0);
  EXPECT_EQ(again.ran, 1);
  const JointReport rep = BuildJointReport(s.All(), {});
  EXPECT_EQ(rep.superseded, 1);
  EXPECT_EQ(rep.cells, 1);
  ASSERT_EQ(rep.tables.size(), 1u);
  const auto& row = rep.tables[0].second.rows.at(0);
  const double shown = std::get<double>(row.at(2).value);
  EXPECT_GT(shown, old_tps * 1.2);  // 150 GB/s instead of 100
}

// A store that must not be written (report, --dry-run) is opened read-only:
// nothing in its folder changes, and a read-only folder is fine.
TEST(Store, ReadOnlyStoreIsReadWithoutWriting) {
  TempDir dir("store_readonly");
  const auto db = dir / "ro" / "r.db";
  WriteFile(dir / "m.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n    plan: [w4]\n");
  {
    Store s(db);
    RunLocal(s, LoadMatrix(dir / "m.yaml"), Opts());
  }
  const auto files_before = [&] {
    std::map<std::string, std::string> f;
    for (const auto& e : std::filesystem::directory_iterator(db.parent_path())) f[e.path().string()] = Sha256File(e.path());
    return f;
  }();
  ASSERT_EQ(files_before.size(), 1u);  // the last writer closed: no -wal/-shm left
  std::filesystem::permissions(db, std::filesystem::perms::owner_read | std::filesystem::perms::group_read);
  std::filesystem::permissions(db.parent_path(),
                               std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  {
    Store ro(db, Store::Mode::kReadOnly);
    EXPECT_EQ(ro.All().size(), 1u);
    EXPECT_EQ(ro.Statuses().size(), 1u);
  }
  std::string out;
  EXPECT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db.string(), "--dry-run"}, &out), 0) << out;
  EXPECT_TRUE(Has(out, "1 cells: 1 done")) << out;
  EXPECT_EQ(Lifeline({"report", "--store", db.string(), "--out", (dir / "rep").string()}, &out), 0) << out;
  std::map<std::string, std::string> files_after;
  for (const auto& e : std::filesystem::directory_iterator(db.parent_path())) {
    files_after[e.path().string()] = Sha256File(e.path());
  }
  EXPECT_EQ(files_after, files_before);  // no -wal/-shm, the same bytes
  std::filesystem::permissions(db.parent_path(), std::filesystem::perms::owner_all);
}

// A store path that cannot be a store is a ConfigError naming --store.
TEST(Store, BadStorePathsAreConfigErrors) {
  TempDir dir("store_bad");
  auto error_of = [](const std::filesystem::path& p, Store::Mode mode) -> std::string {
    try {
      Store s(p, mode);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  std::filesystem::create_directories(dir / "a_dir");
  EXPECT_TRUE(Has(error_of(dir / "a_dir", Store::Mode::kReadWrite), "--store")) << error_of(dir / "a_dir", Store::Mode::kReadWrite);
  EXPECT_TRUE(Has(error_of(dir / "a_dir", Store::Mode::kReadOnly), "is a directory"));
  WriteFile(dir / "file", "x");
  EXPECT_TRUE(Has(error_of(dir / "file" / "r.db", Store::Mode::kReadWrite), "is not a directory"))
      << error_of(dir / "file" / "r.db", Store::Mode::kReadWrite);
  WriteFile(dir / "garbage.db", std::string(4096, 'g'));
  for (auto mode : {Store::Mode::kReadWrite, Store::Mode::kReadOnly}) {
    const std::string e = error_of(dir / "garbage.db", mode);
    EXPECT_TRUE(Has(e, (dir / "garbage.db").string())) << e;
    EXPECT_TRUE(Has(e, "not a database")) << e;
  }
  EXPECT_TRUE(Has(error_of(dir / "none.db", Store::Mode::kReadOnly), "no such results store"));
}

// Report flags that name nothing in the store are refused with the choices.
TEST(Report, FlagsMustNameWhatTheStoreHas) {
  TempDir dir("report_flags");
  const Matrix m = testing::ParseText(
      "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a, device_b]\n    context: [1024, 4096]\n"
      "    plan: [w4, w2]\n");
  Store s(dir / "r.db");
  RunLocal(s, m, Opts());
  const auto rows = s.All();
  auto error_of = [&](JointReportOptions o, const std::set<std::string>& given) -> std::string {
    try {
      CheckJointReportOptions(rows, o, given);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  JointReportOptions o;
  EXPECT_EQ(error_of(o, {}), "(accepted)");
  o.baseline = "nonexist";
  EXPECT_TRUE(Has(error_of(o, {"--baseline"}), "--baseline")) << error_of(o, {"--baseline"});
  EXPECT_TRUE(Has(error_of(o, {"--baseline"}), "one of: w2, w4")) << error_of(o, {"--baseline"});
  o = {};
  o.pareto_device = "nonexist";
  EXPECT_TRUE(Has(error_of(o, {"--pareto-device"}), "one of: device_a, device_b")) << error_of(o, {"--pareto-device"});
  o = {};
  o.pareto_context = -1;
  EXPECT_TRUE(Has(error_of(o, {"--pareto-context"}), "not a positive number of tokens"));
  EXPECT_TRUE(Has(error_of(o, {"--pareto-context"}), "one of: 1024, 4096")) << error_of(o, {"--pareto-context"});
  o.pareto_context = 2048;
  EXPECT_TRUE(Has(error_of(o, {"--pareto-context"}), "2048 is no context")) << error_of(o, {"--pareto-context"});
  // Through the command line: exit 2 with the choices.
  std::string out;
  EXPECT_EQ(Lifeline({"report", "--store", (dir / "r.db").string(), "--out", (dir / "rep").string(), "--baseline",
                      "nonexist"},
                     &out),
            2)
      << out;
  EXPECT_TRUE(Has(out, "one of: w2, w4")) << out;
  EXPECT_EQ(Lifeline({"report", "--store", (dir / "r.db").string(), "--out", (dir / "rep").string(),
                      "--pareto-context", "-1"},
                     &out),
            2)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "rep"));  // nothing written on a bad flag
}

// --baseline and --ceiling naming one plan: one row per plan, Capture% empty
// with a note saying why (never inf).
TEST(Report, BaselineEqualToCeilingLeavesCaptureUndefinedWithAReason) {
  TempDir dir("report_same");
  const Matrix m = testing::ParseText(
      "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
      "    plan: [w4, w2]\n");
  Store s(dir / "r.db");
  RunLocal(s, m, Opts());
  JointReportOptions o;
  o.baseline = o.ceiling = "w4";
  const JointReport rep = BuildJointReport(s.All(), o);
  ASSERT_EQ(rep.tables.size(), 1u);
  const reports::Table& t = rep.tables[0].second;
  ASSERT_EQ(t.rows.size(), 2u);  // w4 once, then w2
  EXPECT_EQ(t.rows[0][0].Text(), "w4");
  EXPECT_EQ(t.rows[1][0].Text(), "w2");
  for (const auto& row : t.rows) EXPECT_TRUE(std::holds_alternative<std::monostate>(row.at(4).value));
  bool noted = false;
  for (const auto& n : t.notes) noted = noted || Has(n, "Capture% is undefined (empty): the baseline and the ceiling are the same plan (w4)");
  EXPECT_TRUE(noted);
}

// `whatif` with the baseline as ceiling: capture_pct is undefined (empty in
// CSV) with the reason on stderr, never inf.
TEST(Whatif, CaptureWithBaselineEqualToCeilingIsUndefined) {
  std::string out;
  ASSERT_EQ(Lifeline({"whatif", "--model", "qwen3-4b", "--device", "device_a", "--plan", "w4w2-gateup", "--sweep",
                      "context=1024,4096", "--baseline", "w4", "--ceiling", "w4", "--format", "csv", "--quiet"},
                     &out),
            0)
      << out;
  EXPECT_FALSE(Has(out, "inf")) << out;
  EXPECT_FALSE(Has(out, "nan")) << out;
  EXPECT_TRUE(Has(out, "capture_pct is undefined at every point: --baseline and --ceiling are the same plan (w4)"))
      << out;
}

// A sweep with failed cells exits non-zero, says how many and where to read why.
TEST(SweepCli, FailedCellsMakeANonZeroExitWithTheCount) {
  TempDir dir("cli_failed");
  WriteFile(dir / "bad_plan.yaml", "name: bad\nrules:\n  - pattern: \"*\"\n    bits: 4\n    group_size: 3000\n");
  WriteFile(dir / "m.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
            "    plan: [w4, bad_plan.yaml]\n");
  const std::string db = (dir / "r.db").string();
  std::string out;
  EXPECT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db}, &out), 1) << out;
  EXPECT_TRUE(Has(out, "1 of 2 cells failed")) << out;
  EXPECT_TRUE(Has(out, "group")) << out;  // the cell's error
  EXPECT_TRUE(Has(out, "--dry-run` (error column)")) << out;
  EXPECT_EQ(Lifeline({"sweep", (dir / "m.yaml").string(), "--store", db, "--dry-run"}, &out), 0) << out;
  EXPECT_TRUE(Has(out, "error")) << out;
  EXPECT_TRUE(Has(out, "group")) << out;
}

// Names and paths that would write outside the output folder, huge products,
// and stores that are not stores: exit 2 naming the key or flag.
TEST(SweepCli, BadNamesSizesAndStoresAreConfigErrors) {
  TempDir dir("cli_bad_more");
  std::string out;
  WriteFile(dir / "esc.yaml",
            "name: ../../escape\nthroughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n"
            "    context: [1024]\n    plan: [w4]\n");
  EXPECT_EQ(Lifeline({"sweep", (dir / "esc.yaml").string()}, &out), 2) << out;
  EXPECT_TRUE(Has(out, (dir / "esc.yaml").string() + ":1:")) << out;
  EXPECT_TRUE(Has(out, "not a plain name")) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.path().parent_path().parent_path() / "escape"));
  // 10^8 cells: refused at once, with the count and the limit.
  std::string ctx, batch;
  for (int i = 1; i <= 1000; ++i) {
    ctx += (i > 1 ? "," : "") + std::to_string(i);
    batch += (i > 1 ? "," : "") + std::to_string(i);
  }
  WriteFile(dir / "huge.yaml", "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [" +
                                   ctx + "]\n    plan: [w4, w2, w4w2-gateup, w4, w2, w4w2-gateup, w4, w2, w4w2-gateup, "
                                   "w4]\n    batch: [" + batch + "]\n    fusion: [paper, none, paper, none, paper, "
                                   "none, paper, none, paper, none]\n");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Lifeline({"sweep", (dir / "huge.yaml").string(), "--dry-run"}, &out), 2) << out;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  EXPECT_TRUE(Has(out, "100000000 cells")) << out;
  EXPECT_TRUE(Has(out, "limit of 200000 cells")) << out;
  // Stores: a directory, a path under a file.
  WriteFile(dir / "ok.yaml",
            "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n    plan: [w4]\n");
  std::filesystem::create_directories(dir / "a_dir");
  EXPECT_EQ(Lifeline({"sweep", (dir / "ok.yaml").string(), "--store", (dir / "a_dir").string()}, &out), 2) << out;
  EXPECT_TRUE(Has(out, "--store")) << out;
  EXPECT_TRUE(Has(out, "is a directory")) << out;
  EXPECT_EQ(Lifeline({"report", "--store", (dir / "a_dir").string()}, &out), 2) << out;
  EXPECT_TRUE(Has(out, "is a directory")) << out;
  WriteFile(dir / "file", "x");
  EXPECT_EQ(Lifeline({"sweep", (dir / "ok.yaml").string(), "--store", (dir / "file" / "r.db").string()}, &out), 2)
      << out;
  EXPECT_TRUE(Has(out, "is not a directory")) << out;
  ASSERT_EQ(Lifeline({"sweep", (dir / "ok.yaml").string(), "--store", (dir / "r.db").string()}, &out), 0) << out;
  EXPECT_EQ(Lifeline({"report", "--store", (dir / "r.db").string(), "--out", (dir / "file").string()}, &out), 2)
      << out;
  EXPECT_TRUE(Has(out, "--out")) << out;
}

}  // namespace
}  // namespace lifeline::sweep
