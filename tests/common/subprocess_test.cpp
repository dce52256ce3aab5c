// The subprocess launcher: exit codes, captured output, working directory,
// spawned children and how they ended.

#include "common/subprocess.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <csignal>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.hpp"

namespace lifeline {
namespace {

namespace fs = std::filesystem;

TEST(RunProcess, ExitCodesAndOutput) {
  const ProcessResult ok = RunProcess({"sh", "-c", "printf 'out'; printf 'err' >&2"});
  EXPECT_EQ(ok.status, 0);
  EXPECT_EQ(ok.out, "out");
  EXPECT_EQ(ok.err, "err");
  const ProcessResult merged = RunProcess({"sh", "-c", "printf a; printf b >&2; exit 3"}, /*merge_stderr=*/true);
  EXPECT_EQ(merged.status, 3);
  EXPECT_EQ(merged.out, "ab");
  EXPECT_EQ(merged.err, "");
  EXPECT_EQ(RunProcess({"sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM);
  const ProcessResult missing = RunProcess({"lifeline-no-such-program"});
  EXPECT_EQ(missing.status, 127);
  EXPECT_NE(missing.err.find("cannot run lifeline-no-such-program"), std::string::npos) << missing.err;
  EXPECT_EQ(RunProcess({}).status, -1);
}

TEST(RunProcess, ArgumentsNeedNoQuoting) {
  const std::string odd = "it's a \"test\" $HOME; `true`";
  const ProcessResult r = RunProcess({"printf", "%s", odd});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, odd);
}

TEST(RunProcess, LargeOutputOnBothStreams) {
  // More than a pipe holds on each stream: both are drained together.
  const ProcessResult r = RunProcess({"sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.size(), 300000u);
  EXPECT_EQ(r.err.size(), 200000u);
}

TEST(RunProcess, WorkingDirectory) {
  const fs::path dir = fs::temp_directory_path() / ("lifeline_cwd_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const ProcessResult r = RunProcess({"pwd"}, false, dir);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, fs::canonical(dir).string() + "\n");
  fs::remove_all(dir);
  const ProcessResult gone = RunProcess({"pwd"}, true, dir);
  EXPECT_EQ(gone.status, 127);
  EXPECT_NE(gone.out.find("cannot enter " + dir.string()), std::string::npos) << gone.out;
}

TEST(SpawnProcess, ChildrenRunTogetherAndReportHowTheyEnded) {
  const fs::path dir = fs::temp_directory_path() / ("lifeline_spawn_" + std::to_string(getpid()));
  fs::create_directories(dir);
  SpawnOptions o;
  o.log = dir / "a.log";
  std::map<pid_t, std::string> running;
  running[SpawnProcess({"sh", "-c", "echo to-log; echo err >&2; exit 1"}, o)] = "exit1";
  running[SpawnProcess({"sh", "-c", "kill -KILL $$"})] = "killed";
  SpawnOptions in_dir;
  in_dir.cwd = dir;
  in_dir.log = dir / "b.log";
  running[SpawnProcess({"sh", "-c", "pwd"}, in_dir)] = "pwd";
  running[SpawnProcess({"lifeline-no-such-program"}, in_dir)] = "missing";
  std::map<std::string, ProcessExit> ended;
  while (!running.empty()) {
    const ProcessExit e = WaitAnyProcess();
    ASSERT_TRUE(running.count(e.pid));
    ended[running[e.pid]] = e;
    running.erase(e.pid);
  }
  EXPECT_FALSE(ended["exit1"].signaled);
  EXPECT_EQ(ended["exit1"].code, 1);
  EXPECT_EQ(ended["exit1"].Describe(), "exited with status 1");
  EXPECT_TRUE(ended["killed"].signaled);
  EXPECT_EQ(ended["killed"].code, SIGKILL);
  EXPECT_EQ(ended["killed"].Describe(), "killed by signal 9 (Killed)");
  EXPECT_EQ(ended["pwd"].code, 0);
  EXPECT_EQ(ended["missing"].code, 127);
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  EXPECT_EQ(read(dir / "a.log"), "to-log\nerr\n");
  const std::string b = read(dir / "b.log");
  EXPECT_NE(b.find(fs::canonical(dir).string() + "\n"), std::string::npos) << b;  // the two ran at once
  EXPECT_NE(b.find("cannot run lifeline-no-such-program"), std::string::npos) << b;
  EXPECT_THROW(WaitAnyProcess(), Error);  // no child left
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lifeline
