#include "experiments/sweep/store.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "common/error.hpp"

#ifndef LIFELINE_VERSION
#define LIFELINE_VERSION "unknown"
#endif

namespace lifeline::sweep {

namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS cells(
  id TEXT PRIMARY KEY,          -- 16 hex digits of SHA-256(inputs)
  kind TEXT NOT NULL,           -- throughput | recovery
  inputs TEXT NOT NULL,         -- canonical JSON of the resolved inputs
  labels TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL CHECK(status IN ('pending','running','done','failed','infeasible')),
  outputs TEXT,                 -- JSON, set when done
  error TEXT,                   -- failed / infeasible
  seed INTEGER,
  version TEXT,                 -- lifeline version that produced the outputs
  checksums TEXT,               -- JSON: input file -> SHA-256
  owner TEXT, owner_host TEXT, owner_pid INTEGER, heartbeat REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at REAL, started_at REAL, finished_at REAL, elapsed_s REAL);
CREATE INDEX IF NOT EXISTS cells_status ON cells(status);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');
)sql";

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      throw Error(fmt::format("results store: cannot prepare '{}': {}", sql, sqlite3_errmsg(db)));
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  // Steps once; true when a row is available.
  bool Step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(fmt::format("results store: {} (code {})", sqlite3_errmsg(db_), rc));
  }
  void Reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::string Text(int c) const {
    const unsigned char* t = sqlite3_column_text(s_, c);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }
  double Real(int c) const { return sqlite3_column_double(s_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back on exceptions.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { Run("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void Commit() {
    Run("COMMIT");
    done_ = true;
  }

 private:
  void Run(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw Error(fmt::format("results store: {} failed: {}", sql, msg));
    }
  }
  sqlite3* db_;
  bool done_ = false;
};

std::string Hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

nlohmann::json ParseJsonColumn(const std::string& s) {
  if (s.empty()) return nullptr;
  return nlohmann::json::parse(s, nullptr, false);
}

const char* kSelectColumns =
    "SELECT id, kind, inputs, labels, status, outputs, error, seed, version, checksums, owner, attempts, "
    "created_at, started_at, finished_at, elapsed_s FROM cells";

CellRow ReadRow(const Stmt& s) {
  CellRow r;
  r.id = s.Text(0);
  r.kind = ParseCellKind(s.Text(1));
  r.inputs = ParseJsonColumn(s.Text(2));
  r.labels = ParseJsonColumn(s.Text(3));
  r.status = ParseCellStatus(s.Text(4));
  r.outputs = ParseJsonColumn(s.Text(5));
  r.error = s.Text(6);
  if (!s.IsNull(7)) r.seed = s.Int(7);
  r.version = s.Text(8);
  r.checksums = ParseJsonColumn(s.Text(9));
  r.owner = s.Text(10);
  r.attempts = s.Int(11);
  r.created_at = s.Real(12);
  r.started_at = s.Real(13);
  r.finished_at = s.Real(14);
  r.elapsed_s = s.Real(15);
  return r;
}

}  // namespace

std::string CellStatusName(CellStatus s) {
  switch (s) {
    case CellStatus::kPending: return "pending";
    case CellStatus::kRunning: return "running";
    case CellStatus::kDone: return "done";
    case CellStatus::kFailed: return "failed";
    case CellStatus::kInfeasible: return "infeasible";
  }
  return "?";
}

CellStatus ParseCellStatus(const std::string& s) {
  for (auto st : {CellStatus::kPending, CellStatus::kRunning, CellStatus::kDone, CellStatus::kFailed,
                  CellStatus::kInfeasible}) {
    if (CellStatusName(st) == s) return st;
  }
  throw InternalError("unknown cell status '" + s + "' in the store");
}

Owner Owner::Self() {
  static const std::string token = [] {
    std::random_device rd;
    return fmt::format("{:08x}", rd());
  }();
  return Owner{Hostname(), static_cast<int64_t>(getpid()), token};
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string LifelineVersion() { return LIFELINE_VERSION; }

bool ProcessAlive(int64_t pid) {
  if (pid <= 0) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  // A zombie (exited, not yet reaped) is dead for our purposes.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(stat, line)) {
    const size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') return false;
  }
  return true;
}

Store::Store(const std::filesystem::path& path, int busy_timeout_ms) : path_(path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw MakeConfigError(path.string(), "--store", "cannot open the results store (" + msg + ")",
                          "a writable SQLite file path", "check the directory exists and is writable");
  }
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  // Switching to WAL takes an exclusive lock, which the busy handler does not
  // wait for: retry while another process is creating the same store.
  for (int attempt = 0;; ++attempt) {
    try {
      Exec("PRAGMA journal_mode=WAL");
      break;
    } catch (const Error&) {
      if (attempt >= 100) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  Exec("PRAGMA synchronous=NORMAL");
  Exec("PRAGMA foreign_keys=ON");
  {
    Transaction t(db_);
    Exec(kSchema);
    t.Commit();
  }
}

Store::~Store() {
  if (db_) sqlite3_close(db_);
}

void Store::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw Error(fmt::format("results store {}: {}", path_.string(), msg));
  }
}

int Store::AddCells(const std::vector<SweepCell>& cells) {
  Transaction t(db_);
  Stmt ins(db_,
           "INSERT INTO cells(id, kind, inputs, labels, status, created_at) VALUES(?, ?, ?, ?, 'pending', ?) "
           "ON CONFLICT(id) DO UPDATE SET labels = excluded.labels WHERE labels != excluded.labels");
  Stmt exists(db_, "SELECT 1 FROM cells WHERE id = ?");
  int added = 0;
  const double now = NowSeconds();
  for (const auto& c : cells) {
    exists.Bind(1, c.id);
    const bool had = exists.Step();
    exists.Reset();
    ins.Bind(1, c.id).Bind(2, CellKindName(c.kind)).Bind(3, c.canonical).Bind(4, c.labels.dump()).Bind(5, now);
    ins.Step();
    ins.Reset();
    if (!had) ++added;
  }
  t.Commit();
  return added;
}

std::optional<CellRow> Store::Get(const std::string& id) {
  Stmt s(db_, (std::string(kSelectColumns) + " WHERE id = ?").c_str());
  s.Bind(1, id);
  if (!s.Step()) return std::nullopt;
  return ReadRow(s);
}

std::vector<CellRow> Store::All() {
  Stmt s(db_, (std::string(kSelectColumns) + " ORDER BY id").c_str());
  std::vector<CellRow> rows;
  while (s.Step()) rows.push_back(ReadRow(s));
  return rows;
}

std::map<std::string, CellStatus> Store::Statuses() {
  Stmt s(db_, "SELECT id, status FROM cells");
  std::map<std::string, CellStatus> out;
  while (s.Step()) out[s.Text(0)] = ParseCellStatus(s.Text(1));
  return out;
}

int Store::ResetStale(double stale_after_s) {
  Transaction t(db_);
  Stmt q(db_, "SELECT id, owner, owner_host, owner_pid, heartbeat FROM cells WHERE status = 'running'");
  const Owner self = Owner::Self();
  const double now = NowSeconds();
  std::vector<std::pair<std::string, std::string>> stale;
  while (q.Step()) {
    const std::string host = q.Text(2);
    const int64_t pid = q.Int(3);
    const bool dead_here = host == self.host && (!ProcessAlive(pid) || pid == self.pid);
    const bool silent = now - q.Real(4) > stale_after_s;
    if (dead_here || silent) stale.emplace_back(q.Text(0), q.Text(1));
  }
  Stmt up(db_, "UPDATE cells SET status = 'pending' WHERE id = ? AND status = 'running' AND owner = ?");
  int n = 0;
  for (const auto& [id, owner] : stale) {
    up.Bind(1, id).Bind(2, owner);
    up.Step();
    n += sqlite3_changes(db_);
    up.Reset();
  }
  t.Commit();
  return n;
}

std::vector<std::string> Store::Claim(const std::vector<std::string>& ids, const Owner& owner,
                                      const std::vector<CellStatus>& from) {
  std::string in;
  for (auto st : from) in += (in.empty() ? "'" : ", '") + CellStatusName(st) + "'";
  const std::string sql =
      "UPDATE cells SET status = 'running', owner = ?, owner_host = ?, owner_pid = ?, heartbeat = ?, "
      "started_at = ?, attempts = attempts + 1, error = NULL WHERE id = ? AND status IN (" + in + ")";
  Transaction t(db_);
  Stmt up(db_, sql.c_str());
  std::vector<std::string> claimed;
  const double now = NowSeconds();
  for (const auto& id : ids) {
    up.Bind(1, owner.Text()).Bind(2, owner.host).Bind(3, owner.pid).Bind(4, now).Bind(5, now).Bind(6, id);
    up.Step();
    if (sqlite3_changes(db_) == 1) claimed.push_back(id);
    up.Reset();
  }
  t.Commit();
  return claimed;
}

void Store::Heartbeat(const Owner& owner) {
  Transaction t(db_);
  Stmt up(db_, "UPDATE cells SET heartbeat = ? WHERE status = 'running' AND owner = ?");
  up.Bind(1, NowSeconds()).Bind(2, owner.Text());
  up.Step();
  t.Commit();
}

int Store::Finish(const std::vector<std::pair<std::string, CellResult>>& results, const Owner& owner) {
  Transaction t(db_);
  Stmt up(db_,
          "UPDATE cells SET status = ?, outputs = ?, error = ?, seed = ?, version = ?, checksums = ?, "
          "finished_at = ?, elapsed_s = ? WHERE id = ? AND status = 'running' AND owner = ?");
  int n = 0;
  const double now = NowSeconds();
  for (const auto& [id, r] : results) {
    LIFELINE_CHECK(r.status == CellStatus::kDone || r.status == CellStatus::kFailed ||
                       r.status == CellStatus::kInfeasible,
                   "a finished cell is done, failed or infeasible");
    up.Bind(1, CellStatusName(r.status));
    if (r.outputs.is_null()) up.BindNull(2); else up.Bind(2, r.outputs.dump());
    if (r.error.empty()) up.BindNull(3); else up.Bind(3, r.error);
    if (r.seed) up.Bind(4, *r.seed); else up.BindNull(4);
    up.Bind(5, LifelineVersion()).Bind(6, r.checksums.dump()).Bind(7, now).Bind(8, r.elapsed_s).Bind(9, id);
    up.Bind(10, owner.Text());
    up.Step();
    n += sqlite3_changes(db_);
    up.Reset();
  }
  t.Commit();
  return n;
}

bool Store::FailIfRunningUnder(const std::string& id, int64_t pid, const std::string& error) {
  Transaction t(db_);
  Stmt up(db_,
          "UPDATE cells SET status = 'failed', error = ?, finished_at = ?, version = ? "
          "WHERE id = ? AND status = 'running' AND owner_host = ? AND owner_pid = ?");
  up.Bind(1, error).Bind(2, NowSeconds()).Bind(3, LifelineVersion()).Bind(4, id).Bind(5, Owner::Self().host).Bind(6, pid);
  up.Step();
  const bool changed = sqlite3_changes(db_) == 1;
  t.Commit();
  return changed;
}

}  // namespace lifeline::sweep
