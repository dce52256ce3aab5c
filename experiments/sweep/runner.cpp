#include "experiments/sweep/runner.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
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
#include "common/progress.hpp"
#include "common/subprocess.hpp"

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

// The sweep's progress line: cells done / total, rate and ETA.
class Progress {
 public:
  Progress(bool on, int total, int done)
      : line_(on ? ProgressLine::Mode::kAlways : ProgressLine::Mode::kOff),
        total_(total),
        done_(done),
        start_done_(done) {}
  void Add(int n) {
    done_ += n;
    Print(false);
  }
  void Print(bool final) {
    if (!final && !line_.Due()) return;
    const double s = line_.ElapsedSeconds();
    const double rate = s > 0 ? (done_ - start_done_) / s : 0;
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    const std::string text =
        fmt::format("sweep: {}/{} cells, {:.1f} cells/s, ETA {:.0f} s", done_, total_, rate, eta);
    if (final) line_.Finish(text);
    else line_.Update(text);
  }

 private:
  ProgressLine line_;
  int total_, done_, start_done_;
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

// Starts `lifeline run-cell` for one cell, logging to the cell's directory;
// the child dies with the runner.
pid_t SpawnRunCell(const RunOptions& o, const fs::path& store, const std::string& id, const fs::path& log) {
  fs::create_directories(log.parent_path());
  SpawnOptions so;
  so.log = log;
  so.die_with_parent = true;
  return SpawnProcess({o.exe, "run-cell", "--store", store.string(), "--cell", id}, so);
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
    const ProcessExit ended = WaitAnyProcess();
    const pid_t pid = ended.pid;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const std::string id = it->second;
    running.erase(it);
    if (ended.signaled || ended.code > 1) {
      const std::string why = ended.Describe();
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
