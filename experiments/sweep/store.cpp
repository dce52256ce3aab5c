#include "experiments/sweep/store.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
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

Store::Store(const std::filesystem::path& path, int busy_timeout_ms)
    : Store(path, Mode::kReadWrite, "--store", busy_timeout_ms) {}

namespace {

// A file: URI for sqlite3_open_v2 (characters with a meaning in URIs escaped).
std::string FileUri(const std::filesystem::path& path, const char* query) {
  std::string uri = "file:";
  for (unsigned char c : std::filesystem::absolute(path).string()) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') uri += static_cast<char>(c);
    else uri += fmt::format("%{:02X}", c);
  }
  return uri + query;
}

}  // namespace

Store::Store(const std::filesystem::path& path, Mode mode, const std::string& flag, int busy_timeout_ms)
    : path_(path) {
  namespace fs = std::filesystem;
  const std::string where = path.string();
  auto fail = [&](const std::string& problem, const std::string& hint) {
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    return MakeConfigError(where, flag, problem, "a results store: an SQLite file written by `lifeline sweep`", hint);
  };
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    throw fail("is a directory", "give the store file, e.g. " + (path / "results.db").string());
  }
  if (mode == Mode::kReadOnly) {
    if (!fs::exists(path, ec)) throw fail("no such results store", "run `lifeline sweep MATRIX --store " + where + "` first");
  } else if (path.has_parent_path() && !fs::is_directory(path.parent_path(), ec)) {
    if (fs::exists(path.parent_path(), ec)) {
      throw fail("its folder " + path.parent_path().string() + " is not a directory", "choose another --store path");
    }
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      throw fail("cannot create its folder " + path.parent_path().string() + " (" + ec.message() + ")",
                 "choose a writable --store path");
    }
  }
  const int flags = mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX
                                            : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  auto open = [&](const std::string& name) {
    if (sqlite3_open_v2(name.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      throw fail("cannot open the results store (" + msg + ")",
                 mode == Mode::kReadOnly ? "check the file is readable"
                                         : "check the folder exists and is writable, or use a store you can write");
    }
    sqlite3_busy_timeout(db_, busy_timeout_ms);
  };
  if (mode == Mode::kReadOnly) {
    // Without a -wal file every result is in the store file itself: read it
    // as it is (immutable), which creates no -wal/-shm files beside it. With
    // one (a writer is live, or died before checkpointing) read through the
    // WAL, which needs the -shm file; where that cannot be made either (a
    // read-only folder), fall back to the file as it is.
    const bool has_wal = fs::exists(path.string() + "-wal", ec);
    open(FileUri(path, has_wal ? "?mode=ro" : "?mode=ro&immutable=1"));
    if (has_wal && sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK &&
        (sqlite3_extended_errcode(db_) & 0xff) == SQLITE_CANTOPEN) {
      sqlite3_close(db_);
      db_ = nullptr;
      open(FileUri(path, "?mode=ro&immutable=1"));
    }
  } else {
    open(path.string());
  }
  // Is it an SQLite file with our table?
  {
    char* err = nullptr;
    bool has_cells = false;
    const int rc = sqlite3_exec(
        db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cells'",
        [](void* p, int, char**, char**) {
          *static_cast<bool*>(p) = true;
          return 0;
        },
        &has_cells, &err);
    if (rc != SQLITE_OK) {
      const std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw fail("cannot read it as SQLite (" + msg + ")",
                 (rc & 0xff) == SQLITE_NOTADB ? "the file is not a results store or is damaged; give another --store"
                                              : "check the file is readable");
    }
    if (mode == Mode::kReadOnly) {
      if (!has_cells) throw fail("is an SQLite file without a 'cells' table", "give a store written by `lifeline sweep`");
      return;
    }
  }
  // Switching to WAL takes an exclusive lock, which the busy handler does not
  // wait for: retry while another process is creating the same store.
  for (int attempt = 0;; ++attempt) {
    try {
      Exec("PRAGMA journal_mode=WAL");
      break;
    } catch (const Error& e) {
      if (access(path.c_str(), W_OK) != 0 || (path.has_parent_path() && access(path.parent_path().c_str(), W_OK) != 0)) {
        throw fail(std::string("cannot write it (") + e.what() + ")",
                   "sweep writes the store: make the file and its folder writable, or copy it; report and --dry-run "
                   "only read");
      }
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

std::map<std::string, std::string> Store::Errors() {
  Stmt s(db_, "SELECT id, error FROM cells WHERE status IN ('failed', 'infeasible')");
  std::map<std::string, std::string> out;
  while (s.Step()) out[s.Text(0)] = s.Text(1);
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
