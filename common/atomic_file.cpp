#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "common/error.hpp"

namespace lifeline {
namespace fs = std::filesystem;
namespace {

constexpr size_t kBufferBytes = 1 << 20;
constexpr int kMaxLinks = 40;  // as the kernel's ELOOP limit

std::string Where(const fs::path& path, const std::string& flag) {
  return flag.empty() ? path.string() : flag + " " + path.string();
}

std::string HintFor(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return "choose a location you can write to";
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return "free some space or write somewhere else";
    case ENOTDIR:
      return "a part of the path is a file, not a directory";
    case ENXIO:
      return "nothing is reading the device or FIFO";
    default:
      return "";
  }
}

// Follows symbolic links (relative ones from the link's directory) to the
// path that is really written; a dangling link gives the path it names.
// `through_proc` is set when the chain passes through /proc (/dev/stdout ->
// /proc/self/fd/1 -> ...): such a file is an open descriptor's and is written
// in place.
fs::path FollowLinks(const fs::path& path, const std::string& flag, bool* through_proc = nullptr) {
  fs::path p = path;
  for (int i = 0; i < kMaxLinks; ++i) {
    struct stat st;
    if (lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    if (through_proc && p.string().rfind("/proc/", 0) == 0) *through_proc = true;
    std::error_code ec;
    const fs::path to = fs::read_symlink(p, ec);
    if (ec) {
      throw MakeConfigError(Where(path, flag), "", "cannot read the symbolic link " + p.string() + ": " + ec.message(),
                            "");
    }
    p = to.is_absolute() ? to : p.parent_path() / to;
  }
  throw MakeConfigError(Where(path, flag), "", "more than 40 symbolic links to follow (a loop?)",
                        "a link chain that ends at a file");
}

void CreateDirectories(const fs::path& dir, const fs::path& shown, const std::string& flag) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    throw MakeConfigError(Where(shown, flag), "", dir.string() + " is a file, not a directory", "a directory",
                          "remove the file or choose another path");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw MakeConfigError(Where(shown, flag), "", "cannot create the directory " + dir.string() + ": " + ec.message(),
                          "", HintFor(ec.value()));
  }
}

}  // namespace

AtomicFile::AtomicFile(const fs::path& path, std::string flag) : path_(path), flag_(std::move(flag)) {
  if (path.empty()) throw MakeConfigError(flag_.empty() ? "output" : flag_, "", "the path is empty", "a file path");
  bool through_proc = false;
  target_ = FollowLinks(path, flag_, &through_proc);
  struct stat st;
  bool exists = false;
  if (stat(path_.c_str(), &st) == 0) {
    exists = true;
    if (S_ISDIR(st.st_mode)) {
      throw MakeConfigError(Where(path_, flag_), "", "is a directory", "a file path",
                            "name a file inside it, e.g. " + (path_ / "out").string());
    }
    if (S_ISSOCK(st.st_mode)) {
      throw MakeConfigError(Where(path_, flag_), "", "is a socket", "a regular file, a device or a FIFO");
    }
    in_place_ = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) || through_proc;
  } else if (errno != ENOENT) {
    const int err = errno;
    throw MakeConfigError(Where(path_, flag_), "", std::string("cannot write: ") + std::strerror(err), "",
                          HintFor(err));
  }
  if (in_place_) {
    // Devices and FIFOs are written through, never replaced; a regular file
    // behind /proc (a redirected /dev/stdout) is truncated and written.
    fd_ = open(path_.c_str(), O_WRONLY | O_CLOEXEC | (S_ISREG(st.st_mode) ? O_TRUNC : 0));
    if (fd_ < 0) {
      const int err = errno;
      throw MakeConfigError(Where(path_, flag_), "", std::string("cannot open: ") + std::strerror(err), "",
                            HintFor(err));
    }
    return;
  }
  const fs::path dir = target_.parent_path();
  if (!dir.empty()) CreateDirectories(dir, path_, flag_);
  static std::atomic<unsigned> counter{0};
  tmp_ = target_;
  tmp_ += ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  fd_ = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    const int err = errno;
    tmp_.clear();
    throw MakeConfigError(Where(path_, flag_), "", std::string("cannot write: ") + std::strerror(err), "",
                          HintFor(err));
  }
  // A file that is replaced keeps its permissions.
  if (exists) (void)fchmod(fd_, st.st_mode & 07777);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) close(fd_);
  if (!committed_ && !tmp_.empty()) unlink(tmp_.c_str());
}

void AtomicFile::Fail(const std::string& action, int err) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (!tmp_.empty()) unlink(tmp_.c_str());
  tmp_.clear();
  throw MakeConfigError(Where(path_, flag_), "", action + ": " + std::strerror(err), "", HintFor(err));
}

void AtomicFile::Write(std::string_view data) {
  LIFELINE_CHECK(fd_ >= 0 && !committed_, "write to a closed output file " + path_.string());
  if (buffer_.size() + data.size() > kBufferBytes) Flush();
  if (data.size() >= kBufferBytes) {
    WriteAll(data);  // large blocks skip the buffer
  } else {
    buffer_.append(data);
  }
}

void AtomicFile::WriteAll(std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail("cannot write", errno);
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::Flush() {
  WriteAll(buffer_);
  buffer_.clear();
}

void AtomicFile::Commit() {
  LIFELINE_CHECK(fd_ >= 0 && !committed_, "commit of a closed output file " + path_.string());
  Flush();
  const int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) Fail("cannot write", errno);
  if (!in_place_ && rename(tmp_.c_str(), target_.c_str()) != 0) Fail("cannot replace the file", errno);
  committed_ = true;
}

void WriteFileAtomic(const fs::path& path, std::string_view content, const std::string& flag) {
  AtomicFile f(path, flag);
  f.Write(content);
  f.Commit();
}

void CreateOutputDirectory(const fs::path& dir, const std::string& flag) {
  if (dir.empty()) throw MakeConfigError(flag.empty() ? "output" : flag, "", "the path is empty", "a directory");
  const fs::path target = FollowLinks(dir, flag);
  CreateDirectories(target, dir, flag);
  if (access(target.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    throw MakeConfigError(Where(dir, flag), "", std::string("cannot write into the directory: ") + std::strerror(err),
                          "", HintFor(err));
  }
}

}  // namespace lifeline
