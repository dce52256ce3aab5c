#include "common/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#include "common/error.hpp"

namespace lifeline {
namespace {

// In the child after fork(): changes directory and executes argv; never returns.
// `env`, when not empty, replaces the environment ("NAME=value" entries).
[[noreturn]] void ExecChild(const std::vector<std::string>& argv, const std::filesystem::path& cwd,
                            const std::vector<std::string>& env = {}) {
  if (!cwd.empty() && chdir(cwd.c_str()) != 0) {
    std::fprintf(stderr, "cannot enter %s to run %s: %s\n", cwd.c_str(), argv[0].c_str(), std::strerror(errno));
    _exit(127);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (!env.empty()) {
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execvpe(args[0], args.data(), envp.data());
  } else {
    execvp(args[0], args.data());
  }
  std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
  _exit(127);
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv, bool merge_stderr, const std::filesystem::path& cwd) {
  ProcessResult r;
  if (argv.empty()) return r;
  int out_fd[2], err_fd[2];
  if (pipe(out_fd) != 0) return r;
  if (pipe(err_fd) != 0) {
    close(out_fd[0]);
    close(out_fd[1]);
    return r;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {out_fd[0], out_fd[1], err_fd[0], err_fd[1]}) close(fd);
    return r;
  }
  if (pid == 0) {
    dup2(out_fd[1], STDOUT_FILENO);
    dup2(merge_stderr ? out_fd[1] : err_fd[1], STDERR_FILENO);
    for (int fd : {out_fd[0], out_fd[1], err_fd[0], err_fd[1]}) close(fd);
    ExecChild(argv, cwd);
  }
  close(out_fd[1]);
  close(err_fd[1]);
  // Read both pipes together so neither fills up and blocks the child.
  pollfd fds[2] = {{out_fd[0], POLLIN, 0}, {err_fd[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, merge_stderr ? &r.out : &r.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return r;
}

pid_t SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& o) {
  LIFELINE_CHECK(!argv.empty(), "SpawnProcess without a program");
  // The child's environment is made here, before fork.
  std::vector<std::string> env;
  if (!o.env_defaults.empty()) {
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    for (const auto& [name, value] : o.env_defaults) {
      if (std::getenv(name.c_str()) == nullptr) env.push_back(name + "=" + value);
    }
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw Error("cannot start " + argv[0] + ": fork failed: " + std::strerror(errno));
  if (pid != 0) return pid;
  if (o.die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);  // the parent died before prctl
  }
  if (!o.log.empty()) {
    const int fd = open(o.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "cannot open the log %s for %s: %s\n", o.log.c_str(), argv[0].c_str(),
                   std::strerror(errno));
      _exit(127);
    }
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ExecChild(argv, o.cwd, env);
}

std::string ProcessExit::Describe() const {
  if (signaled) return "killed by signal " + std::to_string(code) + " (" + strsignal(code) + ")";
  return "exited with status " + std::to_string(code);
}

namespace {

ProcessExit Wait(pid_t which) {
  int st = 0;
  pid_t pid;
  struct rusage ru {};
  while ((pid = wait4(which, &st, 0, &ru)) < 0) {
    if (errno != EINTR) throw Error(std::string("waiting for a child process failed: ") + std::strerror(errno));
  }
  ProcessExit e;
  e.pid = pid;
  e.signaled = WIFSIGNALED(st);
  e.code = e.signaled ? WTERMSIG(st) : WEXITSTATUS(st);
  e.max_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
  e.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  return e;
}

}  // namespace

ProcessExit WaitAnyProcess() { return Wait(-1); }

ProcessExit WaitProcess(pid_t pid) { return Wait(pid); }

}  // namespace lifeline
