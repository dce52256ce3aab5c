#pragma once
// `lifeline-recover recovery-cell`: one recovery cell of a sweep, run in the
// LibTorch executable on behalf of `lifeline` (which does not link LibTorch).
// The parent writes the cell's inputs as JSON, this command runs the recipe
// in the cell's work directory and writes a result JSON:
//   {"status": "done"|"failed"|"infeasible", "error": "...", "seed": N,
//    "outputs": {...}, "input_files": ["model", "tokenizer", "eval text"]}
// It exits 0 whenever it wrote a result (the cell's own failure is in it).

#include <CLI/CLI.hpp>

namespace lifeline::recovery {

void AddRecoveryCellCommand(CLI::App& app);

}  // namespace lifeline::recovery
