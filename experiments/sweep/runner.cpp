#include "experiments/sweep/runner.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "experiments/sweep/cell_exec.hpp"
#include "common/error.hpp"

namespace lifeline::sweep {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Refreshes the heartbeat of this process's claims until destroyed.
class HeartbeatThread {
 public:
  HeartbeatThread(fs::path store, double period_s) : thread_([this, store, period_s] {
    Store s(store);
    const Owner self = Owner::Self();
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(period_s), [this] { return stop_; })) {
      lock.unlock();
      try {
        s.Heartbeat(self);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "sweep: heartbeat: %s\n", e.what());
      }
      lock.lock();
    }
  }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

class Progress {
 public:
  Progress(bool on, int total, int done) : on_(on), total_(total), done_(done), start_done_(done) {}
  void Add(int n) {
    done_ += n;
    Print(false);
  }
  void Print(bool final) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(200)) return;  // at most 5 lines/s
    last_ = now;
    const double s = std::chrono::duration<double>(now - t0_).count();
    const double rate = s > 0 ? (done_ - start_done_) / s : 0;
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    std::fprintf(stderr, "\rsweep: %d/%d cells, %.1f cells/s, ETA %.0f s   %s", done_, total_, rate, eta,
                 final ? "\n" : "");
    std::fflush(stderr);
  }

 private:
  bool on_;
  int total_, done_, start_done_;
  Clock::time_point t0_ = Clock::now();
  Clock::time_point last_{};
};

void Tally(RunSummary& s, CellStatus st) {
  ++s.ran;
  if (st == CellStatus::kDone) ++s.done;
  else if (st == CellStatus::kInfeasible) ++s.infeasible;
  else ++s.failed;
}

void RunThroughput(Store& store, const Matrix& m, const std::vector<std::string>& todo, const RunOptions& o,
                   const std::vector<CellStatus>& from, RunSummary& s, Progress& progress) {
  std::map<std::string, const SweepCell*> by_id;
  for (const auto& c : m.cells) by_id[c.id] = &c;
  ThroughputEvaluator eval;
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  const Owner self = Owner::Self();
  for (size_t start = 0; start < todo.size(); start += o.chunk) {
    const std::vector<std::string> chunk(todo.begin() + static_cast<std::ptrdiff_t>(start),
                                         todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), start + o.chunk)));
    const std::vector<std::string> claimed = store.Claim(chunk, self, from);
    std::vector<std::pair<std::string, CellResult>> results(claimed.size());
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i = next++; i < claimed.size(); i = next++) {
        results[i] = {claimed[i], eval.Run(by_id.at(claimed[i])->inputs)};
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < std::min<int>(threads, static_cast<int>(claimed.size())); ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    store.Finish(results, self);
    for (const auto& [id, r] : results) Tally(s, r.status);
    progress.Add(static_cast<int>(claimed.size()));
  }
}

pid_t SpawnRunCell(const RunOptions& o, const fs::path& store, const std::string& id, const fs::path& log) {
  fs::create_directories(log.parent_path());
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw Error(fmt::format("sweep: fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    // Child: die with the runner, log to the cell's directory.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    const std::string store_s = store.string();
    execl(o.exe.c_str(), "lifeline", "run-cell", "--store", store_s.c_str(), "--cell", id.c_str(),
          static_cast<char*>(nullptr));
    std::fprintf(stderr, "exec %s failed: %s\n", o.exe.c_str(), std::strerror(errno));
    _exit(127);
  }
  return pid;
}

void RunRecovery(Store& store, const std::vector<std::string>& todo, const RunOptions& o, RunSummary& s,
                 Progress& progress) {
  std::map<pid_t, std::string> running;
  size_t next = 0;
  const int jobs = std::max(1, o.jobs);
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && static_cast<int>(running.size()) < jobs) {
      const std::string& id = todo[next++];
      const fs::path log = CellWorkDir(store.path(), id) / "run-cell.log";
      running[SpawnRunCell(o, store.path(), id, log)] = id;
    }
    int st = 0;
    const pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("sweep: waitpid failed: {}", std::strerror(errno)));
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const std::string id = it->second;
    running.erase(it);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) <= 1)) {
      const std::string why = WIFSIGNALED(st) ? fmt::format("killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)))
                                              : fmt::format("exited with status {}", WEXITSTATUS(st));
      store.FailIfRunningUnder(id, pid, fmt::format("run-cell {}; log: {}", why,
                                                    (CellWorkDir(store.path(), id) / "run-cell.log").string()));
    }
    const auto row = store.Get(id);
    if (row && row->status != CellStatus::kRunning) Tally(s, row->status);  // running: another runner has it
    progress.Add(1);
  }
}

}  // namespace

RunSummary RunLocal(Store& store, const Matrix& m, const RunOptions& o) {
  const auto t0 = Clock::now();
  RunSummary s;
  s.total = static_cast<int>(m.cells.size());
  store.AddCells(m.cells);
  s.reset = store.ResetStale(o.stale_after_s);
  const auto statuses = store.Statuses();
  std::vector<CellStatus> from = {CellStatus::kPending};
  if (o.retry_failed) from.push_back(CellStatus::kFailed);
  std::vector<std::string> thr, rec;
  for (const auto& c : m.cells) {
    const CellStatus st = statuses.at(c.id);
    if (std::find(from.begin(), from.end(), st) != from.end()) {
      (c.kind == CellKind::kThroughput ? thr : rec).push_back(c.id);
    } else if (st != CellStatus::kRunning) {
      ++s.skipped;
    }
  }
  Progress progress(o.progress, s.total, s.skipped);
  {
    HeartbeatThread hb(store.path(), o.heartbeat_s);
    if (!thr.empty()) RunThroughput(store, m, thr, o, from, s, progress);
    if (!rec.empty()) RunRecovery(store, rec, o, s, progress);
    // Cells other runners hold: wait for them, and run those whose runner
    // died meanwhile (pid gone on this host, or no heartbeat for
    // stale_after_s) instead of leaving them `running`.
    bool said = false;
    std::map<std::string, int> tries;  // a cell that cannot be claimed is not retried forever
    for (;;) {
      const int reset = store.ResetStale(o.stale_after_s);
      s.reset += reset;
      s.reclaimed += reset;
      const auto now = store.Statuses();
      std::vector<std::string> thr2, rec2;
      int running = 0;
      for (const auto& c : m.cells) {
        const CellStatus st = now.at(c.id);
        if (st == CellStatus::kPending) {
          if (tries[c.id]++ < 2) (c.kind == CellKind::kThroughput ? thr2 : rec2).push_back(c.id);
        } else if (st == CellStatus::kRunning) {
          ++running;
        }
      }
      if (!thr2.empty()) RunThroughput(store, m, thr2, o, {CellStatus::kPending}, s, progress);
      if (!rec2.empty()) RunRecovery(store, rec2, o, s, progress);
      if (!thr2.empty() || !rec2.empty()) continue;
      if (running == 0) break;
      if (!said) {
        std::fprintf(stderr, "\nsweep: waiting for %d cells another runner holds (they run here if it dies)\n",
                     running);
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.01, o.poll_s)));
    }
  }
  progress.Print(true);
  // Cells neither skipped, run here nor left unfinished, another runner ran.
  const auto final_status = store.Statuses();
  for (const auto& c : m.cells) {
    const CellStatus st = final_status.at(c.id);
    s.unfinished += st == CellStatus::kPending || st == CellStatus::kRunning;
  }
  s.elsewhere = std::max(0, s.total - s.skipped - s.ran - s.unfinished);
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

int RunCells(Store& store, const std::vector<std::string>& ids, bool force, bool verbose) {
  store.ResetStale();
  std::vector<CellStatus> from = {CellStatus::kPending, CellStatus::kFailed};
  if (force) from.insert(from.end(), {CellStatus::kDone, CellStatus::kInfeasible});
  const Owner self = Owner::Self();
  std::unique_ptr<ThroughputEvaluator> eval;
  int failed = 0;
  HeartbeatThread hb(store.path(), 5);
  for (const auto& id : ids) {
    const auto row = store.Get(id);
    if (!row) {
      throw MakeConfigError(store.path().string(), "--cell", "no cell '" + id + "' in the store",
                            "an id listed by `lifeline sweep FILE --dry-run`", "");
    }
    if (store.Claim({id}, self, from).empty()) {
      const auto now = store.Get(id);
      if (verbose) std::fprintf(stderr, "run-cell: %s is %s; nothing to do\n", id.c_str(),
                                CellStatusName(now->status).c_str());
      continue;
    }
    CellResult r;
    if (row->kind == CellKind::kThroughput) {
      if (!eval) eval = std::make_unique<ThroughputEvaluator>();
      r = eval->Run(row->inputs);
    } else {
      r = RunRecoveryCell(row->inputs, CellWorkDir(store.path(), id));
    }
    store.Finish({{id, r}}, self);
    if (r.status == CellStatus::kFailed) ++failed;
    if (verbose) {
      std::fprintf(stderr, "run-cell: %s %s in %.3f s%s%s\n", id.c_str(), CellStatusName(r.status).c_str(),
                   r.elapsed_s, r.error.empty() ? "" : ": ", r.error.c_str());
    }
  }
  return failed;
}

}  // namespace lifeline::sweep
