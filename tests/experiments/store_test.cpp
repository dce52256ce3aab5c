// The SQLite results store: life cycle of a row, dead-owner recovery, and
// several processes writing at once.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "experiments/sweep/runner.hpp"
#include "experiments/sweep/store.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::ParseText;
using testing::TempDir;

constexpr const char* kMatrix = R"(
throughput:
  axes:
    model: [qwen3-4b, gpt-oss-20b]
    device: [device_a, device_b]
    context: [1024, 2048, 4096, 8192]
    plan: [w4, w2, w4w2-gateup]
)";

TEST(Store, RowLifeCycle) {
  TempDir dir("store_cycle");
  Store s(dir / "r.db");
  const Matrix m = ParseText(kMatrix);
  EXPECT_EQ(s.AddCells(m.cells), 48);
  EXPECT_EQ(s.AddCells(m.cells), 0);  // idempotent
  const std::string id = m.cells[0].id;
  const Owner me = Owner::Self();
  ASSERT_EQ(s.Claim({id}, me, {CellStatus::kPending}).size(), 1u);
  EXPECT_TRUE(s.Claim({id}, me, {CellStatus::kPending}).empty());  // no double claim
  EXPECT_EQ(s.Get(id)->status, CellStatus::kRunning);
  CellResult r;
  r.outputs = {{"tps", 12.5}};
  r.seed = 7;
  r.checksums = {{"f", "abc"}};
  EXPECT_EQ(s.Finish({{id, r}}, me), 1);
  const CellRow row = *s.Get(id);
  EXPECT_EQ(row.status, CellStatus::kDone);
  EXPECT_EQ(row.outputs["tps"], 12.5);
  EXPECT_EQ(row.seed, 7);
  EXPECT_EQ(row.attempts, 1);
  EXPECT_EQ(row.version, LifelineVersion());
  EXPECT_EQ(row.inputs, m.cells[0].inputs);
  EXPECT_EQ(row.checksums["f"], "abc");
  // A result from someone who no longer owns the row is ignored.
  Owner other = me;
  other.token = "someone-else";
  r.outputs = {{"tps", 1.0}};
  EXPECT_EQ(s.Finish({{id, r}}, other), 0);
  EXPECT_EQ(s.Get(id)->outputs["tps"], 12.5);
}

TEST(Store, DeadOwnersClaimsGoBackToPending) {
  TempDir dir("store_stale");
  Store s(dir / "r.db");
  const Matrix m = ParseText(kMatrix);
  s.AddCells(m.cells);
  // A process that has exited: its pid is free (reaped).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  Owner dead = Owner::Self();
  dead.pid = child;
  dead.token = "dead";
  ASSERT_EQ(s.Claim({m.cells[0].id, m.cells[1].id}, dead, {CellStatus::kPending}).size(), 2u);
  // A claim under this process's own pid is from an earlier life of the pid
  // (ResetStale runs at start-up, before this process claims anything): dead.
  Owner live = Owner::Self();
  ASSERT_EQ(s.Claim({m.cells[2].id}, live, {CellStatus::kPending}).size(), 1u);
  // A live owner on this host (our parent) keeps its claim.
  live.pid = getppid();
  ASSERT_EQ(s.Claim({m.cells[3].id}, live, {CellStatus::kPending}).size(), 1u);
  EXPECT_EQ(s.ResetStale(3600), 3);  // the dead owner's two and our own pid's one
  EXPECT_EQ(s.Get(m.cells[0].id)->status, CellStatus::kPending);
  EXPECT_EQ(s.Get(m.cells[3].id)->status, CellStatus::kRunning);  // parent is alive
  // Another host's claim without heartbeat for longer than the limit is dead too.
  Owner remote{"some-other-host", 1, "r"};
  ASSERT_EQ(s.Claim({m.cells[4].id}, remote, {CellStatus::kPending}).size(), 1u);
  EXPECT_EQ(s.ResetStale(3600), 0);
  EXPECT_EQ(s.ResetStale(-1), 2);  // everything silent: remote and the parent's
}

TEST(Store, ConcurrentWritersNeitherLoseNorDuplicate) {
  TempDir dir("store_concurrent");
  const auto db = dir / "r.db";
  const Matrix m = ParseText(kMatrix);
  {
    Store s(db);
    s.AddCells(m.cells);
  }
  std::vector<std::string> ids;
  for (const auto& c : m.cells) ids.push_back(c.id);
  // Four processes race over the same cells, each claiming one at a time.
  std::vector<pid_t> kids;
  for (int k = 0; k < 4; ++k) {
    const pid_t pid = fork();
    if (pid == 0) {
      try {
        Store s(db);
        RunCells(s, ids, false, false);
        _exit(0);
      } catch (...) {
        _exit(3);
      }
    }
    kids.push_back(pid);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  Store s(db);
  const auto rows = s.All();
  ASSERT_EQ(rows.size(), m.cells.size());
  for (const auto& r : rows) {
    EXPECT_EQ(r.status, CellStatus::kDone) << r.id << " " << r.error;
    EXPECT_EQ(r.attempts, 1) << r.id;  // each cell ran exactly once
    EXPECT_GT(r.outputs["tps"].get<double>(), 0);
  }
}

}  // namespace
}  // namespace lifeline::sweep
