// The local runner: runs every cell once, skips finished cells on rerun,
// records failures and infeasible cells and goes on.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>

#include "common/subprocess.hpp"
#include "experiments/sweep/cell_exec.hpp"
#include "experiments/sweep/runner.hpp"
#include "experiments/sweep/slurm.hpp"
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
                                    in["context"], ParseFidelity(in["fidelity"].get<std::string>()));
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

// Sets an environment variable for one test (the runner's children inherit it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::filesystem::path WriteScript(const std::filesystem::path& file, const std::string& body) {
  std::ofstream(file) << "#!/bin/sh\n" << body;
  std::filesystem::permissions(file, std::filesystem::perms::owner_all);
  return file;
}

TEST(Runner, RecoveryCellWithoutLifelineRecoverFailsAndSaysHowToFix) {
  TempDir dir("runner_recovery");
  ScopedEnv env("LIFELINE_RECOVER_BIN", (dir / "no-such-lifeline-recover").string());
  EXPECT_FALSE(RecoveryCellsAvailable());
  const Matrix m = testing::ParseText("recovery:\n  fixed: {steps: 1}\n");
  Store s(dir / "r.db");
  const RunSummary r = RunLocal(s, m, Opts());
  EXPECT_EQ(r.failed, 1);
  const CellRow row = s.All().at(0);
  EXPECT_EQ(row.status, CellStatus::kFailed);
  EXPECT_NE(row.error.find("recovery cells run in lifeline-recover"), std::string::npos) << row.error;
  EXPECT_NE(row.error.find("LIFELINE_TORCH=ON"), std::string::npos) << row.error;
  EXPECT_TRUE(std::filesystem::exists(CellWorkDir(s.path(), row.id) / "run-cell.log"));
  // run-cell itself says so in its exit status (1), as sweep does.
  const ProcessResult rc = RunProcess({LIFELINE_BINARY, "run-cell", "--store", s.path().string(), "--cell", row.id},
                                      /*merge_stderr=*/true);
  EXPECT_EQ(rc.status, 1) << rc.out;
  EXPECT_NE(rc.out.find("1 of 1 cells failed"), std::string::npos) << rc.out;
}

// The protocol between `lifeline run-cell` and `lifeline-recover recovery-cell`
// (inputs JSON in, result JSON out, the child's output in the cell's log),
// exercised with a stand-in for lifeline-recover so no LibTorch is needed.
TEST(Runner, RecoveryCellRunsLifelineRecoverAsAChild) {
  TempDir dir("runner_recovery_child");
  const auto fake = WriteScript(dir / "fake-recover", R"(
while [ $# -gt 0 ]; do
  case "$1" in
    --inputs) I=$2; shift;;
    --result) R=$2; shift;;
    --work-dir) W=$2; shift;;
  esac
  shift
done
echo "fake lifeline-recover: $W, policy=$OMP_WAIT_POLICY"
grep -q '"steps": 1' "$I" || { echo "inputs lack the recipe" >&2; exit 4; }
printf '{"status":"done","seed":7,"outputs":{"metrics":{"ar_pct":42.5}},"input_files":["%s"]}\n' "$I" > "$R"
)");
  ScopedEnv env("LIFELINE_RECOVER_BIN", fake.string());
  ScopedEnv policy("OMP_WAIT_POLICY", "");
  unsetenv("OMP_WAIT_POLICY");  // the child gets lifeline's default
  EXPECT_TRUE(RecoveryCellsAvailable());
  const Matrix m = testing::ParseText("recovery:\n  fixed: {steps: 1}\n");
  Store s(dir / "r.db");
  const RunSummary r = RunLocal(s, m, Opts());
  EXPECT_EQ(r.done, 1);
  const CellRow row = s.All().at(0);
  ASSERT_EQ(row.status, CellStatus::kDone) << row.error;
  EXPECT_DOUBLE_EQ(row.outputs.at("metrics").at("ar_pct").get<double>(), 42.5);
  EXPECT_EQ(row.seed, 7);
  const auto inputs = CellWorkDir(s.path(), row.id) / "cell_inputs.json";
  EXPECT_EQ(row.checksums.count(inputs.string()), 1u) << row.checksums.dump();
  std::ifstream log(CellWorkDir(s.path(), row.id) / "lifeline-recover.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("fake lifeline-recover"), std::string::npos) << text;
  EXPECT_NE(text.find("policy=PASSIVE"), std::string::npos) << text;
}

// `lifeline recover` (and, through the same process environment, a sweep's
// recovery cells) starts lifeline-recover with passive OpenMP waits, unless
// the user chose a policy.
TEST(Runner, LifelineRecoverStartsWithPassiveOpenMpWaitsUnlessTheUserSetOne) {
  TempDir dir("runner_recovery_env");
  const auto fake = WriteScript(dir / "fake-recover", "echo \"policy=$OMP_WAIT_POLICY args=$*\"\n");
  ScopedEnv bin("LIFELINE_RECOVER_BIN", fake.string());
  const char* old = std::getenv("OMP_WAIT_POLICY");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  unsetenv("OMP_WAIT_POLICY");
  std::string out;
  EXPECT_EQ(RunCapture({LIFELINE_BINARY, "recover", "--steps", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("policy=PASSIVE args=recover --steps 1"), std::string::npos) << out;
  {
    ScopedEnv user("OMP_WAIT_POLICY", "ACTIVE");
    out.clear();
    EXPECT_EQ(RunCapture({LIFELINE_BINARY, "recover"}, &out), 0) << out;
    EXPECT_NE(out.find("policy=ACTIVE"), std::string::npos) << out;
  }
  if (saved) setenv("OMP_WAIT_POLICY", saved->c_str(), 1);
  else unsetenv("OMP_WAIT_POLICY");
}

TEST(Runner, RecoveryCellWhoseChildDiesWithoutAResultFailsWithItsOutput) {
  TempDir dir("runner_recovery_dies");
  const auto fake = WriteScript(dir / "fake-recover", "echo 'out of memory in step 3' >&2\nexit 3\n");
  ScopedEnv env("LIFELINE_RECOVER_BIN", fake.string());
  const Matrix m = testing::ParseText("recovery:\n  fixed: {steps: 1}\n");
  Store s(dir / "r.db");
  EXPECT_EQ(RunLocal(s, m, Opts()).failed, 1);
  const CellRow row = s.All().at(0);
  EXPECT_EQ(row.status, CellStatus::kFailed);
  EXPECT_NE(row.error.find("exited with status 3"), std::string::npos) << row.error;
  EXPECT_NE(row.error.find("out of memory in step 3"), std::string::npos) << row.error;
}

}  // namespace
}  // namespace lifeline::sweep
