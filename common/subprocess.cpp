#include "common/subprocess.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lifeline {

ProcessResult RunProcess(const std::vector<std::string>& argv, bool merge_stderr) {
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
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
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

}  // namespace lifeline
