// `lifeline sweep`, `lifeline run-cell` and `lifeline report`: experiment
// matrices against a SQLite results store, run locally or on Slurm, and the
// joint accuracy + throughput report.

#include <fmt/format.h>

#include <unistd.h>

#include <iostream>
#include <memory>
#include <set>
#include <thread>

#include "experiments/commands.hpp"
#include "experiments/sweep/cell_exec.hpp"
#include "experiments/sweep/joint_report.hpp"
#include "experiments/sweep/matrix.hpp"
#include "experiments/sweep/runner.hpp"
#include "experiments/sweep/slurm.hpp"
#include "experiments/sweep/store.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"

namespace lifeline::cli {

namespace fs = std::filesystem;
using namespace lifeline::sweep;

namespace {

struct SweepOptions {
  std::string file;
  std::string store;
  std::string preset;
  bool dry_run = false;
  std::string backend = "local";
  std::string kind;  // "" = every cell
  int threads = 0;
  int jobs = 1;
  int chunk = 256;
  bool no_retry_failed = false;
  // Slurm.
  std::string slurm_dir;
  std::vector<std::string> sbatch_args;
  std::string sbatch = "sbatch";
  int cells_per_task = 1;
  int max_parallel = 0;
  bool wait = false;
  double wait_timeout_s = 0;
};

std::string DefaultStore(const Matrix& m) { return (fs::path("out") / m.name / "results.db").string(); }

std::string Describe(const SweepCell& c) {
  const auto& in = c.inputs;
  if (c.kind == CellKind::kThroughput) {
    std::string s = fmt::format("{} {} {} ctx={}", in["model"].get<std::string>(), in["device"].get<std::string>(),
                                in["plan"].get<std::string>(), in["context"].get<int64_t>());
    if (in["fidelity"] != "exact") s += " fidelity=" + in["fidelity"].get<std::string>();
    if (in["fusion"] != "paper") s += " fusion=" + in["fusion"].get<std::string>();
    if (in["batch"] != 1) s += fmt::format(" batch={}", in["batch"].get<int64_t>());
    return s;
  }
  std::string s;
  for (const auto& [k, v] : in["recipe"].items()) s += (s.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return s;
}

void DryRun(const Matrix& m, const fs::path& store_path) {
  std::map<std::string, CellStatus> st;
  std::map<std::string, std::string> errors;
  if (fs::exists(store_path)) {
    Store s(store_path, Store::Mode::kReadOnly);  // a dry run only reads
    st = s.Statuses();
    errors = s.Errors();
  }
  reports::Table t;
  t.title = fmt::format("{}: {} cells{}", m.name, m.cells.size(), m.preset.empty() ? "" : " (preset " + m.preset + ")");
  t.columns = {"id", "kind", "status", "cell"};
  bool any_error = false;
  for (const auto& c : m.cells) any_error = any_error || errors.count(c.id);
  if (any_error) t.columns.push_back("error");
  std::map<std::string, int> counts;
  for (const auto& c : m.cells) {
    const auto it = st.find(c.id);
    const std::string status = it == st.end() ? "new" : CellStatusName(it->second);
    ++counts[status];
    t.rows.push_back({c.id, CellKindName(c.kind), status, Describe(c)});
    if (any_error) {
      const auto e = errors.find(c.id);
      t.rows.back().push_back(e == errors.end() ? std::string() : e->second);
    }
  }
  std::cout << reports::ToText(t);
  std::string summary;
  for (const auto& [k, n] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", n, k);
  std::cout << fmt::format("\n{} cells: {} (store: {}{})\n", m.cells.size(), summary, store_path.string(),
                           fs::exists(store_path) ? "" : ", not created yet");
}

// Throws an Error (exit 1) saying how many cells of `m` failed and why.
void FailIfCellsFailed(Store& store, const Matrix& m, const SweepOptions& o) {
  const auto st = store.Statuses();
  const auto errors = store.Errors();
  std::vector<const SweepCell*> failed;
  for (const auto& c : m.cells) {
    const auto it = st.find(c.id);
    if (it != st.end() && it->second == CellStatus::kFailed) failed.push_back(&c);
  }
  if (failed.empty()) return;
  std::string msg = fmt::format("sweep {}: {} of {} cells failed", m.name, failed.size(), m.cells.size());
  const size_t shown = std::min<size_t>(failed.size(), 3);
  for (size_t i = 0; i < shown; ++i) {
    const SweepCell& c = *failed[i];
    const auto e = errors.find(c.id);
    msg += fmt::format("\n  {} ({}): {}", c.id, Describe(c), e == errors.end() ? "" : e->second);
    if (c.kind == CellKind::kRecovery) {
      msg += fmt::format(" [log: {}]", (CellWorkDir(store.path(), c.id) / "run-cell.log").string());
    }
  }
  if (failed.size() > shown) msg += fmt::format("\n  ... and {} more", failed.size() - shown);
  msg += fmt::format("\nevery cell's error: `lifeline sweep {} --store {}{} --dry-run` (error column); rerunning the "
                     "sweep retries failed cells",
                     o.file, store.path().string(), o.preset.empty() ? "" : " --preset " + o.preset);
  throw Error(msg);
}

void RunSweep(const SweepOptions& o) {
  Matrix m = LoadMatrix(o.file, o.preset);
  if (!o.kind.empty()) {
    std::erase_if(m.cells, [&](const SweepCell& c) { return CellKindName(c.kind) != o.kind; });
  }
  const fs::path store_path = o.store.empty() ? DefaultStore(m) : o.store;
  if (o.dry_run) {
    DryRun(m, store_path);
    return;
  }
  Store store(store_path, Store::Mode::kReadWrite,
              o.store.empty() ? "--store (default out/<matrix name>/results.db)" : "--store");
  if (o.backend == "local") {
    RunOptions ro;
    ro.threads = o.threads;
    ro.jobs = o.jobs;
    ro.chunk = static_cast<size_t>(o.chunk);
    ro.retry_failed = !o.no_retry_failed;
    ro.progress = StderrIsTty();
    const RunSummary s = RunLocal(store, m, ro);
    std::cout << fmt::format(
        "sweep {}: {} cells; ran {} ({} done, {} infeasible, {} failed) in {:.3f} s ({}); {} already "
        "finished, {} stale claims reset ({} of a runner that died during this run), {} run by another runner; "
        "store {}\n",
        m.name, s.total, s.ran, s.done, s.infeasible, s.failed, s.seconds,
        // Throughput sweeps run thousands of cells a second, recovery cells take minutes each.
        s.ran == 0 || s.seconds <= 0 ? std::string("no cells run")
        : s.ran / s.seconds >= 1   ? fmt::format("{:.0f} cells/s", s.ran / s.seconds)
                                   : fmt::format("{:.1f} s per cell", s.seconds / s.ran),
        s.skipped, s.reset, s.reclaimed, s.elsewhere, store_path.string());
    FailIfCellsFailed(store, m, o);
    if (s.unfinished > 0) {
      throw Error(fmt::format("sweep {}: {} cells could not be claimed and are still pending or running in {}; "
                              "rerun the sweep",
                              m.name, s.unfinished, store_path.string()));
    }
    return;
  }
  SlurmOptions so;
  so.dir = o.slurm_dir;
  so.sbatch_args = o.sbatch_args;
  so.sbatch = o.sbatch;
  so.cells_per_task = o.cells_per_task;
  so.max_parallel = o.max_parallel;
  so.retry_failed = !o.no_retry_failed;
  const auto sub = SubmitSlurm(store, m, so);
  if (!sub) {
    std::cout << fmt::format("sweep {}: nothing to submit: every cell is finished or running ({})\n", m.name,
                             store_path.string());
    return;
  }
  std::cout << fmt::format("sweep {}: submitted {} cells as Slurm job {} ({} array tasks); script {}\n", m.name,
                           sub->cells, sub->job_id, sub->tasks, sub->script.string());
  if (o.wait) {
    const int left = WaitForSlurm(store, *sub, o.wait_timeout_s, StderrIsTty());
    const auto st = store.Statuses();
    int done = 0, failed = 0, infeasible = 0;
    for (const auto& id : sub->ids) {
      const CellStatus s = st.at(id);
      done += s == CellStatus::kDone;
      failed += s == CellStatus::kFailed;
      infeasible += s == CellStatus::kInfeasible;
    }
    std::cout << fmt::format("slurm job {}: {} done, {} infeasible, {} failed, {} unfinished\n", sub->job_id, done,
                             infeasible, failed, left);
    if (left > 0) {
      throw Error(fmt::format("slurm job {} left {} cells unfinished; logs in {}", sub->job_id, left,
                              (sub->script.parent_path() / "logs").string()));
    }
    FailIfCellsFailed(store, m, o);
  }
}

struct RunCellOptions {
  std::string store;
  std::vector<std::string> cells;
  bool force = false;
};

struct ReportOptions {
  std::string store;
  std::string out = "out/report";
  JointReportOptions jr;
};

}  // namespace

void AddSweepCommands(CLI::App& app) {
  {
    auto o = std::make_shared<SweepOptions>();
    CLI::App* sub = app.add_subcommand(
        "sweep",
        "Run an experiment matrix (experiments/*.yaml) into a SQLite results store. Resumable: rerun the same "
        "command after an interruption (even kill -9) and only missing cells run.");
    sub->add_option("file", o->file, "matrix YAML (e.g. experiments/paper.yaml)")->required()->check(CLI::ExistingFile);
    sub->add_option("--store", o->store, "results store (default: out/<matrix name>/results.db)");
    sub->add_option("--preset", o->preset, "named preset of the matrix (its presets: section)");
    sub->add_option("--kind", o->kind, "only cells of this kind: throughput or recovery")
        ->check(CLI::IsMember({"throughput", "recovery"}));
    sub->add_flag("--dry-run", o->dry_run, "list the cells and their status in the store; run nothing");
    sub->add_option("--backend", o->backend, "local (threads + processes) or slurm (sbatch job array)")
        ->check(CLI::IsMember({"local", "slurm"}))
        ->capture_default_str();
    sub->add_option("--threads", o->threads, "throughput worker threads (0 = hardware threads)")->capture_default_str();
    sub->add_option("--jobs", o->jobs, "recovery cells run at once, one process each")->capture_default_str();
    sub->add_option("--chunk", o->chunk, "throughput cells claimed and recorded per transaction")
        ->capture_default_str();
    sub->add_flag("--no-retry-failed", o->no_retry_failed, "leave failed cells alone (default: retry them)");
    sub->add_option("--slurm-dir", o->slurm_dir, "slurm: scripts, cell lists and logs (default: <store dir>/slurm)");
    sub->add_option("--sbatch-arg", o->sbatch_args, "slurm: extra #SBATCH line, e.g. --partition=gpu (repeatable)");
    sub->add_option("--sbatch", o->sbatch, "slurm: the sbatch program")->capture_default_str();
    sub->add_option("--cells-per-task", o->cells_per_task, "slurm: cells each array task runs")->capture_default_str();
    sub->add_option("--max-parallel", o->max_parallel, "slurm: array tasks running at once (0 = no limit)");
    sub->add_flag("--wait", o->wait, "slurm: wait until the submitted cells finish");
    sub->add_option("--wait-timeout", o->wait_timeout_s, "slurm: seconds to wait at most (0 = no limit)");
    sub->callback([o] {
      if (o->threads < 0 || o->jobs < 1 || o->cells_per_task < 1 || o->chunk < 1) {
        throw MakeConfigError("command line", "--threads/--jobs/--chunk/--cells-per-task", "out of range",
                              "--threads >= 0, --jobs >= 1, --chunk >= 1, --cells-per-task >= 1");
      }
      RunSweep(*o);
    });
  }
  {
    auto o = std::make_shared<RunCellOptions>();
    CLI::App* sub = app.add_subcommand(
        "run-cell",
        "Run cells of a results store in this process (what sweep's child processes and Slurm array tasks run). "
        "A cell finished already is left alone unless --force.");
    sub->add_option("--store", o->store, "results store")->required();
    sub->add_option("--cell", o->cells, "cell id (repeatable)")->required();
    sub->add_flag("--force", o->force, "rerun cells that are done or infeasible");
    sub->callback([o] {
      if (!fs::exists(o->store)) {
        throw MakeConfigError(o->store, "--store", "no such results store", "a store written by `lifeline sweep`", "");
      }
      Store store(o->store);
      const int failed = RunCells(store, o->cells, o->force, true);
      if (failed > 0) {
        // The errors are in the store; the exit status tells a script or a Slurm task.
        throw Error(fmt::format("run-cell: {} of {} cells failed (the error of each is printed above and kept in "
                                "the store {}; rerunning retries them)",
                                failed, o->cells.size(), o->store));
      }
    });
  }
  {
    auto o = std::make_shared<ReportOptions>();
    CLI::App* sub = app.add_subcommand(
        "report",
        "Joint accuracy + throughput report from a results store: one table per model (TPS per device, Gain%, "
        "Capture%, teacher/quantized/recovered scores with AR%), the recovery cells, and a Pareto plot of "
        "throughput gain vs accuracy recovered (Markdown, CSV, LaTeX, JSON, PNG, SVG).");
    sub->add_option("--store", o->store, "results store written by `lifeline sweep`")->required();
    sub->add_option("--out", o->out, "output directory")->capture_default_str();
    sub->add_option("--baseline", o->jr.baseline, "plan Gain% and Capture% are relative to")->capture_default_str();
    sub->add_option("--ceiling", o->jr.ceiling, "plan that is 100% Capture")->capture_default_str();
    sub->add_option("--pareto-device", o->jr.pareto_device, "device of the Pareto plot's gains (default: first)");
    sub->add_option("--pareto-context", o->jr.pareto_context, "context of the Pareto plot's gains")
        ->capture_default_str();
    sub->callback([o, sub] {
      if (!fs::exists(o->store)) {
        throw MakeConfigError(o->store, "--store", "no such results store", "a store written by `lifeline sweep`", "");
      }
      std::error_code ec;
      if (fs::exists(o->out, ec) && !fs::is_directory(o->out, ec)) {
        throw MakeConfigError(o->out, "--out", "exists and is not a directory", "a directory for the report files",
                              "choose another --out");
      }
      Store store(o->store, Store::Mode::kReadOnly);  // a report only reads
      std::set<std::string> given;
      for (const char* flag : {"--baseline", "--ceiling", "--pareto-device", "--pareto-context"}) {
        if (sub->count(flag) > 0) given.insert(flag);
      }
      const std::vector<CellRow> rows = store.All();
      CheckJointReportOptions(rows, o->jr, given);
      fs::create_directories(o->out, ec);
      if (ec || access(o->out.c_str(), W_OK) != 0) {
        throw MakeConfigError(o->out, "--out", "cannot write into it" + (ec ? " (" + ec.message() + ")" : std::string()),
                              "a writable directory for the report files", "choose another --out");
      }
      const JointReport r = BuildJointReport(rows, o->jr);
      const auto written = WriteJointReport(r, o->out);
      for (const auto& [stem, t] : r.tables) {
        if (stem.rfind("model_", 0) == 0 && t.rows.size() <= 60) std::cout << reports::ToText(t) << "\n";
      }
      std::cout << fmt::format("report: {} cells ({} done, {} infeasible, {} failed, {} unfinished{}); wrote {} "
                               "files to {}/\n",
                               r.cells, r.done, r.infeasible, r.failed, r.unfinished,
                               r.superseded ? fmt::format("; {} older cells of since-changed input files not shown",
                                                          r.superseded)
                                            : "",
                               written.size(), o->out);
    });
  }
}

}  // namespace lifeline::cli
