#pragma once
// Slurm backend: the cells a matrix still needs (pending, and failed when
// retrying) go to an sbatch job array; task i runs `lifeline run-cell` on
// lines [i*K+1, (i+1)*K] of a cell-list file written beside the script.
// Results land in the same SQLite store, which must be on a filesystem every
// node shares (and that supports SQLite's WAL locking: local disk or a
// cluster filesystem, not NFS). Resubmitting runs only what is still missing;
// cells an earlier array is still working on are claimed there, and a
// duplicate task finds them claimed or done and exits.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "experiments/sweep/matrix.hpp"
#include "experiments/sweep/store.hpp"

namespace lifeline::sweep {

struct SlurmOptions {
  std::filesystem::path dir;            // scripts, cell lists and logs (default: <store dir>/slurm)
  std::vector<std::string> sbatch_args; // extra sbatch arguments (--partition=..., --time=...)
  std::string sbatch = "sbatch";        // the sbatch binary
  std::string exe;                      // lifeline binary the tasks run (default: this one)
  int cells_per_task = 1;               // K
  int max_parallel = 0;                 // --array=0-N%P when > 0
  bool retry_failed = true;
};

struct SlurmSubmission {
  std::string job_id;                   // from sbatch --parsable
  int cells = 0;                        // cells submitted
  int tasks = 0;                        // array tasks
  std::filesystem::path script;         // the sbatch script
  std::filesystem::path cell_list;      // one cell id per line
  std::vector<std::string> ids;         // the cells submitted
};

// The sbatch script for `tasks` array tasks over `cell_list`.
std::string SbatchScript(const std::string& job_name, const std::filesystem::path& store,
                         const std::filesystem::path& cell_list, const std::filesystem::path& log_dir,
                         const SlurmOptions& o, int tasks);

// Adds the matrix's cells to the store, resets dead claims and submits what is
// missing. Returns nullopt when nothing is missing.
std::optional<SlurmSubmission> SubmitSlurm(Store& store, const Matrix& m, const SlurmOptions& o);

// Waits until every submitted cell is done, failed or infeasible, or the job
// has left the queue (squeue) with cells still unfinished. Returns the number
// of unfinished cells.
int WaitForSlurm(Store& store, const SlurmSubmission& sub, double timeout_s, bool progress);

// Runs a program and captures its stdout+stderr. Returns the exit status
// (-1 when it could not start).
int RunCapture(const std::vector<std::string>& argv, std::string* output);

}  // namespace lifeline::sweep
