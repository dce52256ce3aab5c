#pragma once
// Runs another program and captures what it prints: the one subprocess
// launcher of the project (sweep runners, Slurm, llama.cpp measurements).

#include <string>
#include <vector>

namespace lifeline {

struct ProcessResult {
  int status = -1;       // exit status; 128 + signal when killed; -1 when it could not start
  std::string out;       // standard output (and standard error when merged)
  std::string err;       // standard error when not merged
};

// Runs argv[0] (looked up on PATH) with the arguments; waits for it.
// `merge_stderr` sends standard error into `out`.
ProcessResult RunProcess(const std::vector<std::string>& argv, bool merge_stderr = false);

}  // namespace lifeline
