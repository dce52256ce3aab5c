#pragma once
// Runs the `lifeline` binary as a user does.

#include <array>
#include <cstdio>
#include <string>
#include <sys/wait.h>

namespace lifeline::testing {

struct ExecResult {
  int status;
  std::string output;
};

// `args` go to the shell as written; stderr is merged unless `merge_stderr` is false.
inline ExecResult Exec(const std::string& args, bool merge_stderr = true) {
  const std::string cmd = std::string(LIFELINE_BINARY) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int st = p ? pclose(p) : -1;
  return {WEXITSTATUS(st), out};
}

}  // namespace lifeline::testing
