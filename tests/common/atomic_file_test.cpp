// Output files: temporary + rename for regular files, written through for
// devices and FIFOs, links kept, and no temporary left after any failure.

#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "common/error.hpp"

namespace lifeline {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lifeline_atomic_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Names in dir_ other than `keep`: a leftover temporary shows up here.
  std::vector<std::string> Others(const std::vector<std::string>& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string n = e.path().filename().string();
      if (std::find(keep.begin(), keep.end(), n) == keep.end()) out.push_back(n);
    }
    return out;
  }
  fs::path dir_;
};

TEST_F(AtomicFileTest, WritesANewFileAndReplacesAnOldOne) {
  const fs::path p = dir_ / "sub" / "out.csv";
  WriteFileAtomic(p, "a,b\n1,2\n");
  EXPECT_EQ(Read(p), "a,b\n1,2\n");
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  WriteFileAtomic(p, "new\n");
  EXPECT_EQ(Read(p), "new\n");
  // The replaced file keeps its permissions.
  EXPECT_EQ(fs::status(p).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  EXPECT_TRUE(fs::is_empty(dir_ / "sub") == false);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "sub"), fs::directory_iterator()), 1);
}

TEST_F(AtomicFileTest, UncommittedFileLeavesTheOldContentsAndNoTemporary) {
  const fs::path p = dir_ / "out.txt";
  WriteFileAtomic(p, "old\n");
  {
    AtomicFile f(p);
    f.Write("half of the n");
  }
  EXPECT_EQ(Read(p), "old\n");
  EXPECT_TRUE(Others({"out.txt"}).empty());
}

TEST_F(AtomicFileTest, CharacterDeviceIsWrittenThroughNotReplaced) {
  // A private /dev/null (major 1, minor 3) when this process may create one,
  // so a regression cannot break the machine's; else the real one.
  fs::path dev = dir_ / "null";
  if (mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) dev = "/dev/null";
  AtomicFile f(dev, "--out");
  EXPECT_TRUE(f.in_place());
  f.Write(std::string(3 << 20, 'x'));  // more than the buffer
  f.Commit();
  EXPECT_TRUE(fs::is_character_file(dev)) << dev;
  WriteFileAtomic(dev, "again\n");
  EXPECT_TRUE(fs::is_character_file(dev)) << dev;
  EXPECT_TRUE(Others({"null"}).empty());
}

TEST_F(AtomicFileTest, FifoIsWrittenThroughToItsReader) {
  const fs::path fifo = dir_ / "pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] {
    std::ifstream in(fifo, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    got = ss.str();
  });
  WriteFileAtomic(fifo, "through the pipe\n", "--out");
  reader.join();
  EXPECT_EQ(got, "through the pipe\n");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_TRUE(Others({"pipe"}).empty());
}

TEST_F(AtomicFileTest, OpenDescriptorThroughProcIsWrittenInPlace) {
  // What /dev/stdout resolves to: /proc/self/fd/N, here a pipe and a file.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  WriteFileAtomic("/proc/self/fd/" + std::to_string(fds[1]), "into the pipe\n");
  close(fds[1]);
  char buf[64] = {};
  EXPECT_EQ(read(fds[0], buf, sizeof buf), 14);
  EXPECT_STREQ(buf, "into the pipe\n");
  close(fds[0]);
  const fs::path file = dir_ / "redirected.txt";
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  WriteFileAtomic("/proc/self/fd/" + std::to_string(fd), "written in place\n");
  close(fd);
  EXPECT_EQ(Read(file), "written in place\n");
  EXPECT_TRUE(Others({"redirected.txt"}).empty());
}

TEST_F(AtomicFileTest, SymlinkIsKeptAndItsTargetUpdated) {
  fs::create_directories(dir_ / "real");
  const fs::path target = dir_ / "real" / "data.yaml";
  WriteFileAtomic(target, "old\n");
  const fs::path link = dir_ / "link.yaml";
  fs::create_symlink(fs::path("real") / "data.yaml", link);  // relative, as users make them
  WriteFileAtomic(link, "new\n", "--write");
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(fs::read_symlink(link), fs::path("real") / "data.yaml");
  EXPECT_EQ(Read(target), "new\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "real"), fs::directory_iterator()), 1);
  // A dangling link: the file it names is created.
  const fs::path dangling = dir_ / "dangling";
  fs::create_symlink(dir_ / "real" / "later.yaml", dangling);
  WriteFileAtomic(dangling, "later\n");
  EXPECT_TRUE(fs::is_symlink(dangling));
  EXPECT_EQ(Read(dir_ / "real" / "later.yaml"), "later\n");
}

TEST_F(AtomicFileTest, SocketIsRefused) {
  const fs::path sock = dir_ / "s";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  try {
    WriteFileAtomic(sock, "x", "--out");
    ADD_FAILURE() << "a socket was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--out " + sock.string() + ": is a socket"), std::string::npos) << e.what();
  }
  close(fd);
  EXPECT_TRUE(fs::is_socket(sock));
}

TEST_F(AtomicFileTest, DirectoryWhereAFileIsExpectedIsAConfigError) {
  try {
    WriteFileAtomic(dir_, "x", "--out");
    ADD_FAILURE() << "a directory was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--out " + dir_.string() + ": is a directory"), std::string::npos)
        << e.what();
  }
}

TEST_F(AtomicFileTest, PathUnderAFileIsAConfigError) {
  WriteFileAtomic(dir_ / "plain", "x");
  try {
    WriteFileAtomic(dir_ / "plain" / "out.csv", "x", "--residuals");
    ADD_FAILURE() << "a path under a file was accepted";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--residuals " + (dir_ / "plain" / "out.csv").string()), std::string::npos) << m;
    EXPECT_NE(m.find("is a file, not a directory"), std::string::npos) << m;
  }
  EXPECT_TRUE(Others({"plain"}).empty());
}

TEST_F(AtomicFileTest, ReadOnlyDirectoryIsAConfigErrorWithNoTemporary) {
  const fs::path ro = dir_ / "ro";
  fs::create_directories(ro);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  // Root writes into read-only directories, so as root the write is tried in
  // a child that has become `nobody` (CI runs as root).
  auto attempt = [&]() -> int {
    try {
      WriteFileAtomic(ro / "out.csv", "x", "--out");
      return 1;  // accepted
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      return m.find("--out " + (ro / "out.csv").string() + ": cannot write: Permission denied") != std::string::npos
                 ? 0
                 : 2;
    }
  };
  int result = 0;
  if (geteuid() == 0) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      _exit(attempt());
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    result = WEXITSTATUS(st);
  } else {
    result = attempt();
  }
  EXPECT_NE(result, 1) << "wrote into a read-only directory";
  EXPECT_NE(result, 2) << "the error does not say '--out <path>: cannot write: Permission denied'";
  EXPECT_NE(result, 3) << "could not become nobody to test as a non-root user";
  EXPECT_EQ(result, 0);
  EXPECT_TRUE(fs::is_empty(ro));
}

TEST_F(AtomicFileTest, FailedWriteLeavesNoTemporary) {
  // A file size limit makes the write fail after the temporary exists (as a
  // full disk would), whoever runs the test.
  const fs::path p = dir_ / "big.bin";
  WriteFileAtomic(p, "old\n");
  struct sigaction ignore {}, old_action {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGXFSZ, &ignore, &old_action);
  rlimit old_limit{};
  getrlimit(RLIMIT_FSIZE, &old_limit);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    WriteFileAtomic(p, std::string(2 << 20, 'x'), "--out");
  } catch (const ConfigError& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  sigaction(SIGXFSZ, &old_action, nullptr);
  EXPECT_NE(message.find("--out " + p.string() + ": cannot write: File too large"), std::string::npos) << message;
  EXPECT_EQ(Read(p), "old\n");
  EXPECT_TRUE(Others({"big.bin"}).empty());
}

TEST_F(AtomicFileTest, OutputDirectory) {
  CreateOutputDirectory(dir_ / "a" / "b", "--out");
  EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
  CreateOutputDirectory(dir_ / "a" / "b", "--out");  // existing: fine
  WriteFileAtomic(dir_ / "file", "x");
  try {
    CreateOutputDirectory(dir_ / "file", "--out");
    ADD_FAILURE() << "a file was accepted as a directory";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("--out " + (dir_ / "file").string() + ": ", 0), 0u) << m;
    EXPECT_NE(m.find("is a file, not a directory"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace lifeline
