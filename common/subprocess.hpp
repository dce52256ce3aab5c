#pragma once
// Runs other programs: the one subprocess launcher of the project (sweep
// runners, Slurm, gnuplot, llama.cpp measurements). Programs are started from
// an argument vector, never through a shell, so no argument needs quoting.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace lifeline {

struct ProcessResult {
  int status = -1;       // exit status; 128 + signal when killed; -1 when it could not start
  std::string out;       // standard output (and standard error when merged)
  std::string err;       // standard error when not merged
};

// Runs argv[0] (looked up on PATH) with the arguments; waits for it.
// `merge_stderr` sends standard error into `out`; `cwd`, when not empty, is the
// directory it runs in.
ProcessResult RunProcess(const std::vector<std::string>& argv, bool merge_stderr = false,
                         const std::filesystem::path& cwd = {});

// How a child started with SpawnProcess runs.
struct SpawnOptions {
  std::filesystem::path log;     // standard output and error appended here (empty: inherited)
  std::filesystem::path cwd;     // working directory (empty: this process's)
  bool die_with_parent = false;  // the child is killed (SIGKILL) when this process dies
  // Variables the child gets when this process's environment does not set them.
  std::vector<std::pair<std::string, std::string>> env_defaults;
};

// Starts argv[0] (a path, or looked up on PATH) without waiting; returns its
// pid. Throws lifeline::Error when the process cannot be created; a program
// that cannot be executed exits with status 127 after saying why in its log.
pid_t SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// A child that has ended.
struct ProcessExit {
  pid_t pid = -1;
  bool signaled = false;  // killed by a signal
  int code = 0;           // exit status, or the signal number when signaled
  int64_t max_rss_bytes = 0;  // the child's peak resident memory (getrusage's ru_maxrss)
  double cpu_s = 0;           // its user + system CPU time

  // "exited with status 3" / "killed by signal 9 (Killed)".
  std::string Describe() const;
};

// Waits for any child of this process to end (retrying on EINTR). Throws
// lifeline::Error when there is no child to wait for.
ProcessExit WaitAnyProcess();
// Waits for the child `pid` to end (retrying on EINTR).
ProcessExit WaitProcess(pid_t pid);

}  // namespace lifeline
