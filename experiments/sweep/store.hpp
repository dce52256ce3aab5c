#pragma once
// The results store: one SQLite file (WAL journal, busy timeout, every change
// in a transaction), one row per cell. Several processes may write at once
// (local runner, `lifeline run-cell` children, Slurm array tasks on a shared
// filesystem).
//
// Cell life cycle: pending -> running (claimed by an owner: host, pid, a random
// token, heartbeat) -> done | failed | infeasible. A running row whose owner
// is dead (same host: the pid no longer exists; any host: no heartbeat for
// `stale_after_s`) goes back to pending, so a killed sweep loses nothing.

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/sweep/matrix.hpp"

namespace lifeline::sweep {

enum class CellStatus { kPending, kRunning, kDone, kFailed, kInfeasible };
std::string CellStatusName(CellStatus s);
CellStatus ParseCellStatus(const std::string& s);

// Who runs a cell.
struct Owner {
  std::string host;   // gethostname()
  int64_t pid = 0;    // getpid()
  std::string token;  // random per process: tells two lives of one pid apart
  static Owner Self();
  std::string Text() const { return host + ":" + std::to_string(pid) + ":" + token; }
};

struct CellRow {
  std::string id;
  CellKind kind = CellKind::kThroughput;
  nlohmann::json inputs;    // resolved inputs (the id's preimage)
  nlohmann::json labels;    // report labels and resolved paths (not hashed)
  CellStatus status = CellStatus::kPending;
  nlohmann::json outputs;   // null until done
  std::string error;        // failed / infeasible: the message
  std::optional<int64_t> seed;
  std::string version;      // lifeline version that produced the outputs
  nlohmann::json checksums; // input file -> SHA-256
  std::string owner;        // host:pid:token of the last claimant
  int64_t attempts = 0;     // claims so far
  double created_at = 0, started_at = 0, finished_at = 0;  // unix seconds
  double elapsed_s = 0;     // run time of the last attempt
};

// What a finished cell records.
struct CellResult {
  CellStatus status = CellStatus::kDone;  // done, failed or infeasible
  nlohmann::json outputs;
  std::string error;
  std::optional<int64_t> seed;
  nlohmann::json checksums = nlohmann::json::object();
  double elapsed_s = 0;
};

class Store {
 public:
  enum class Mode {
    kReadWrite,  // created if missing; its folder is created too
    kReadOnly,   // must exist; never written (a read-only file or folder is fine)
  };
  // Opens (creating if needed) the store at `path`. Errors name `flag`.
  explicit Store(const std::filesystem::path& path, int busy_timeout_ms = 120000);
  Store(const std::filesystem::path& path, Mode mode, const std::string& flag = "--store",
        int busy_timeout_ms = 120000);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Inserts cells not yet present as pending (labels refreshed on existing
  // ones); returns how many were new.
  int AddCells(const std::vector<SweepCell>& cells);
  std::optional<CellRow> Get(const std::string& id);
  std::vector<CellRow> All();  // ordered by id
  // Status of each given id present in the store.
  std::map<std::string, CellStatus> Statuses();
  // The error of each failed or infeasible cell.
  std::map<std::string, std::string> Errors();

  // Resets running rows whose owner is dead to pending; returns how many.
  int ResetStale(double stale_after_s = 300);
  // Atomically claims the cells among `ids` whose status is in `from`
  // (pending, and failed when retrying); returns the ids claimed.
  std::vector<std::string> Claim(const std::vector<std::string>& ids, const Owner& owner,
                                 const std::vector<CellStatus>& from);
  // Refreshes the heartbeat of every row `owner` is running.
  void Heartbeat(const Owner& owner);
  // Records results of cells `owner` claimed (one transaction). A row no
  // longer running under `owner` is left alone; returns how many were written.
  int Finish(const std::vector<std::pair<std::string, CellResult>>& results, const Owner& owner);
  // Marks a cell failed if it is still running under a process `pid` on this
  // host (a run-cell child that crashed); returns whether it did.
  bool FailIfRunningUnder(const std::string& id, int64_t pid, const std::string& error);

 private:
  void Exec(const std::string& sql);
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
};

// Whether process `pid` exists on this host.
bool ProcessAlive(int64_t pid);
// Seconds since the epoch.
double NowSeconds();
// lifeline's version string (CMake project version).
std::string LifelineVersion();

}  // namespace lifeline::sweep
