// The Slurm backend against a real scheduler: the test writes a localhost
// slurm.conf (auth/none, state in a temp dir), starts slurmctld and slurmd,
// submits a small matrix as a job array, checks the store against a local
// run, resubmits (only the missing cells go), and stops the daemons.

#include <gtest/gtest.h>

#include "tests/require.hpp"
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <thread>

#include "experiments/sweep/runner.hpp"
#include "experiments/sweep/slurm.hpp"
#include "experiments/sweep/store.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFile;

bool OnPath(const std::string& prog) {
  std::string out;
  return RunCapture({"sh", "-c", "command -v " + prog}, &out) == 0;
}

std::string ShortHostname() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  std::string h = buf;
  return h.substr(0, h.find('.'));
}

pid_t StartDaemon(const std::vector<std::string>& argv, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// slurmctld + slurmd for the test's lifetime.
class LocalSlurm {
 public:
  explicit LocalSlurm(const fs::path& dir) : dir_(dir) {
    const std::string host = ShortHostname();
    const int port = 20000 + (getpid() % 5000) * 2;
    fs::create_directories(dir / "state");
    fs::create_directories(dir / "spool");
    const std::string d = dir.string();
    WriteFile(dir / "slurm.conf",
              "ClusterName=lifelinetest\nSlurmctldHost=" + host + "\nSlurmUser=root\nSlurmdUser=root\n"
              "AuthType=auth/none\nCredType=cred/none\n"
              "SlurmctldPort=" + std::to_string(port) + "\nSlurmdPort=" + std::to_string(port + 1) + "\n"
              "StateSaveLocation=" + d + "/state\nSlurmdSpoolDir=" + d + "/spool\n"
              "SlurmctldPidFile=" + d + "/slurmctld.pid\nSlurmdPidFile=" + d + "/slurmd.pid\n"
              "SlurmctldLogFile=" + d + "/slurmctld.log\nSlurmdLogFile=" + d + "/slurmd.log\n"
              "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
              "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nSchedulerType=sched/backfill\n"
              "ReturnToService=2\nMpiDefault=none\nJobAcctGatherType=jobacct_gather/none\n"
              "AccountingStorageType=accounting_storage/none\n"
              "NodeName=" + host + " CPUs=2 State=UNKNOWN\n"
              "PartitionName=debug Nodes=" + host + " Default=YES MaxTime=INFINITE State=UP\n");
    setenv("SLURM_CONF", (dir / "slurm.conf").c_str(), 1);
    ctld_ = StartDaemon({"slurmctld", "-D", "-i"}, dir / "slurmctld.out");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    slurmd_ = StartDaemon({"slurmd", "-D"}, dir / "slurmd.out");
  }
  ~LocalSlurm() {
    for (pid_t p : {slurmd_, ctld_}) {
      if (p > 0) {
        kill(p, SIGTERM);
        waitpid(p, nullptr, 0);
      }
    }
    unsetenv("SLURM_CONF");
  }
  // Waits until the node is idle; returns the last sinfo output.
  bool WaitIdle(double timeout_s, std::string* last) {
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
      last->clear();
      if (RunCapture({"sinfo", "-h", "-o", "%T"}, last) == 0 && last->find("idle") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return false;
  }
  std::string Logs() const {
    std::string s;
    for (const char* f : {"slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"}) {
      std::string tail;
      RunCapture({"tail", "-n", "15", (dir_ / f).string()}, &tail);
      s += std::string("--- ") + f + "\n" + tail;
    }
    return s;
  }

 private:
  fs::path dir_;
  pid_t ctld_ = -1, slurmd_ = -1;
};

constexpr const char* kDevice =
    "name: small\ndescription: a 4 GB test device\nint8_tops: 50\nmemory_bandwidth_gb_per_s: 100\n"
    "memory_capacity_gb: 4\nefficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25,\n"
    "  moe_expert_compute_int2: 0.004, moe_expert_compute_int4: 0.004}\n";

std::string Matrix(const std::string& contexts) {
  return "throughput:\n  axes:\n    model: [qwen3-4b, qwen3-14b]\n    device: [device_a, small.yaml]\n"
         "    context: [" + contexts + "]\n    plan: [w4, w2]\n";
}

TEST(Slurm, JobArrayFillsTheStoreAndResubmissionRunsOnlyWhatIsMissing) {
  for (const char* prog : {"slurmctld", "slurmd", "sbatch", "squeue", "sinfo"}) {
    LIFELINE_REQUIRE(OnPath(prog), prog << " (Debian's slurm-wlm, listed in scripts/setup-packages.txt)");
  }
  LIFELINE_REQUIRE(geteuid() == 0, "root: the Slurm test starts slurmd, which needs it");
  TempDir dir("slurm");
  LocalSlurm slurm(dir / "scheduler");
  std::string sinfo;
  ASSERT_TRUE(slurm.WaitIdle(60, &sinfo)) << "scheduler did not come up: " << sinfo << "\n" << slurm.Logs();

  WriteFile(dir / "small.yaml", kDevice);
  WriteFile(dir / "m1.yaml", Matrix("1024, 4096"));
  WriteFile(dir / "m2.yaml", Matrix("1024, 4096, 8192"));
  const std::string bin = LIFELINE_BINARY;
  const std::string db = (dir / "slurm.db").string();
  auto sweep = [&](const std::string& matrix, std::string* out) {
    out->clear();
    return RunCapture({bin, "sweep", (dir / matrix).string(), "--store", db, "--backend", "slurm", "--cells-per-task",
                       "3", "--wait", "--wait-timeout", "180"},
                      out);
  };
  std::string out;
  ASSERT_EQ(sweep("m1.yaml", &out), 0) << out << slurm.Logs();
  EXPECT_NE(out.find("submitted 16 cells as Slurm job"), std::string::npos) << out;
  EXPECT_NE(out.find("(6 array tasks)"), std::string::npos) << out;
  EXPECT_NE(out.find("12 done, 4 infeasible, 0 failed, 0 unfinished"), std::string::npos) << out;

  // The same cells run locally give the same outputs.
  Store local(dir / "local.db");
  RunOptions o;
  o.exe = bin;
  RunLocal(local, LoadMatrix(dir / "m1.yaml"), o);
  Store slurm_store(db);
  const auto a = local.All(), b = slurm_store.All();
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].status, b[i].status) << b[i].id << " " << b[i].error;
    EXPECT_EQ(a[i].outputs, b[i].outputs) << b[i].id;
    EXPECT_EQ(b[i].attempts, 1) << b[i].id;
  }
  // One log per array task.
  int task_logs = 0;
  for (const auto& e : fs::directory_iterator(dir / "slurm" / "logs")) task_logs += e.path().extension() == ".out";
  EXPECT_EQ(task_logs, 6);

  // Resubmission with a larger matrix: only the 8 new cells go.
  ASSERT_EQ(sweep("m2.yaml", &out), 0) << out << slurm.Logs();
  EXPECT_NE(out.find("submitted 8 cells"), std::string::npos) << out;
  EXPECT_EQ(slurm_store.All().size(), 24u);
  for (const auto& r : slurm_store.All()) {
    EXPECT_TRUE(r.status == CellStatus::kDone || r.status == CellStatus::kInfeasible) << r.id << " " << r.error;
    EXPECT_EQ(r.attempts, 1) << r.id;
  }
  // Nothing missing: nothing submitted.
  ASSERT_EQ(sweep("m2.yaml", &out), 0) << out;
  EXPECT_NE(out.find("nothing to submit"), std::string::npos) << out;
}

}  // namespace
}  // namespace lifeline::sweep
