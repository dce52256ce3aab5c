// Kill-and-resume: a sweep killed with SIGKILL at random points, several
// times, then rerun to completion, leaves the same store as an uninterrupted
// run: the same cell ids, the same outputs, every cell exactly once.

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <random>
#include <thread>

#include "experiments/sweep/store.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::TempDir;

// 3 models x 2 devices x 200 contexts x 4 plans x 2 fidelities = 9600 cells,
// chunk 4: a full run is thousands of transactions, long enough to be killed
// in the middle.
std::string Matrix() {
  std::string ctx;
  for (int i = 1; i <= 200; ++i) ctx += (i > 1 ? ", " : "") + std::to_string(i * 512);
  return "throughput:\n  axes:\n    model: [qwen3-4b, qwen3-14b, gpt-oss-20b]\n    device: [device_a, device_b]\n"
         "    context: [" + ctx + "]\n    plan: [w4, w2, w4w2-gateup, w4w3-gateup]\n    fidelity: [paper, exact]\n";
}

pid_t StartSweep(const std::filesystem::path& matrix, const std::filesystem::path& db) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    execl(LIFELINE_BINARY, "lifeline", "sweep", matrix.c_str(), "--store", db.c_str(), "--threads", "2",
          "--chunk", "4", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int RunToEnd(const std::filesystem::path& matrix, const std::filesystem::path& db) {
  const pid_t pid = StartSweep(matrix, db);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(KillResume, KilledSweepsEndLikeAnUninterruptedOne) {
  TempDir dir("kill_resume");
  testing::WriteFile(dir / "m.yaml", Matrix());
  // Reference: one uninterrupted run, timed to pick kill points inside it.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(RunToEnd(dir / "m.yaml", dir / "ref.db"), 0);
  const double full_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("uninterrupted run: %.3f s\n", full_s);

  // Kill points chosen by progress: each run is killed once the store holds a
  // random number of finished cells (sorted targets across the six runs), so
  // every kill lands mid-sweep; one more run is killed during start-up.
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> target_dist(100, 9500);
  std::vector<int> targets;
  for (int k = 0; k < 6; ++k) targets.push_back(target_dist(rng));
  std::sort(targets.begin(), targets.end());
  targets.insert(targets.begin() + 2, -1);  // -1: kill 50 ms after start
  int kills_mid_run = 0;
  for (size_t k = 0; k < targets.size(); ++k) {
    const pid_t pid = StartSweep(dir / "m.yaml", dir / "killed.db");
    int done = 0;
    if (targets[k] < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } else {
      while (true) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!std::filesystem::exists(dir / "killed.db")) continue;
        Store s(dir / "killed.db");
        done = 0;
        for (const auto& [id, status] : s.Statuses()) done += status == CellStatus::kDone;
        if (done >= targets[k]) break;
        if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // finished already (should not happen)
      }
    }
    const bool was_running = kill(pid, SIGKILL) == 0;
    int st = 0;
    waitpid(pid, &st, 0);
    Store s(dir / "killed.db");
    int running = 0;
    done = 0;
    for (const auto& [id, status] : s.Statuses()) {
      done += status == CellStatus::kDone;
      running += status == CellStatus::kRunning;
    }
    if (was_running && WIFSIGNALED(st) && done < 9600) ++kills_mid_run;
    std::printf("kill %zu (target %d done): %d done, %d left running by the dead runner\n", k, targets[k], done,
                running);
  }
  EXPECT_EQ(kills_mid_run, 7) << "the sweep finished before most kills; the test did not interrupt it";
  ASSERT_EQ(RunToEnd(dir / "m.yaml", dir / "killed.db"), 0);

  Store ref(dir / "ref.db"), got(dir / "killed.db");
  const auto a = ref.All(), b = got.All();
  ASSERT_EQ(a.size(), 9600u);
  ASSERT_EQ(b.size(), a.size());  // no cell lost or duplicated (ids are the primary key)
  int redone = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(b[i].status, CellStatus::kDone) << b[i].id;
    EXPECT_EQ(a[i].inputs, b[i].inputs);
    EXPECT_EQ(a[i].outputs, b[i].outputs) << b[i].id;
    redone += b[i].attempts > 1;
  }
  std::printf("%d cells were claimed by a killed runner and redone\n", redone);
}

}  // namespace
}  // namespace lifeline::sweep
