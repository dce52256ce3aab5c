#pragma once
// Local execution of a matrix against a results store.
//  - throughput cells: claimed in chunks, evaluated by a pool of threads,
//    recorded one transaction per chunk;
//  - recovery cells: one child process each (`lifeline run-cell`, fork/exec of
//    /proc/self/exe, killed with the runner via PR_SET_PDEATHSIG), at most
//    `jobs` at a time, so a crash in one cannot take the others down.
// Resumable: on start, running rows whose owner died go back to pending;
// done/infeasible cells are never redone; failed cells are retried unless
// `retry_failed` is false. A heartbeat thread keeps this process's claims fresh.
// Cells another runner holds are waited for, polling every `poll_s`; when that
// runner dies (its pid is gone on this host, or its heartbeat is older than
// `stale_after_s`) its cells are reclaimed and run here. RunLocal returns when
// every cell of the matrix is finished.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "experiments/sweep/matrix.hpp"
#include "experiments/sweep/store.hpp"

namespace lifeline::sweep {

struct RunOptions {
  int threads = 0;             // throughput worker threads; 0 = hardware threads
  int jobs = 1;                // concurrent recovery processes
  bool retry_failed = true;    // rerun failed cells
  bool progress = false;       // progress line on stderr (done/total, rate, ETA)
  size_t chunk = 256;          // throughput cells per claim/record transaction
  std::string exe = "/proc/self/exe";  // the lifeline binary for run-cell children
  double stale_after_s = 120;  // a claim without heartbeat for this long is dead
  double heartbeat_s = 5;      // heartbeat period
  double poll_s = 1;           // how often cells held by other runners are checked
};

struct RunSummary {
  int total = 0;               // cells in the matrix
  int skipped = 0;             // already done/infeasible (or failed, when not retrying)
  int reset = 0;               // stale running rows reset to pending
  int ran = 0;                 // cells this run executed
  int done = 0, failed = 0, infeasible = 0;  // outcomes of the cells this run executed
  int elsewhere = 0;           // run by another runner (waited for)
  int unfinished = 0;          // still pending or running at the end (could not be claimed)
  int reclaimed = 0;           // of those reset: held by a runner that died during this run
  double seconds = 0;          // wall time
};

RunSummary RunLocal(Store& store, const Matrix& m, const RunOptions& o);

// `lifeline run-cell`: claims and runs the given cells in this process (the
// unit of work of child processes and Slurm array tasks). Cells already done
// are left alone unless `force`. Returns the number of cells that failed.
int RunCells(Store& store, const std::vector<std::string>& ids, bool force, bool verbose);

}  // namespace lifeline::sweep
