#pragma once
// Executes one cell.
//  - throughput: the roofline in-process (microseconds); compiled graphs,
//    models and devices are cached and shared by worker threads.
//  - recovery: `lifeline-recover recovery-cell` (the LibTorch executable, a
//    child process) runs the cell's recipe in the cell's work directory;
//    without it (a build without LibTorch) the cell fails with a clear error.
// Errors are caught and returned as failed / infeasible results: a cell never
// throws out of here.

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "experiments/sweep/store.hpp"

namespace lifeline::sweep {

class ThroughputEvaluator {
 public:
  ThroughputEvaluator();
  ~ThroughputEvaluator();
  // Outputs: tps, tpot_s, batch_tokens_per_s, and the memory footprint
  // (ComputeFootprint): weight_bytes, kv_cache_bytes,
  // activation_workspace_bytes, footprint_bytes. Infeasible when the device
  // gives memory_capacity_gb and the footprint exceeds it. Thread-safe.
  CellResult Run(const nlohmann::json& inputs);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether this build can run recovery cells (lifeline-recover is found, or
// LIFELINE_RECOVER_BIN names it).
bool RecoveryCellsAvailable();
// Runs a recovery cell with its work directory `work_dir` (created).
CellResult RunRecoveryCell(const nlohmann::json& inputs, const std::filesystem::path& work_dir);

// Work directory of a recovery cell: <store dir>/<store stem>_cells/<id>.
std::filesystem::path CellWorkDir(const std::filesystem::path& store, const std::string& id);

}  // namespace lifeline::sweep
