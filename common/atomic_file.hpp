#pragma once
// Output files written so that nothing half-written is ever left under the
// name the user gave: the bytes go to a temporary beside the file, which is
// renamed over it once complete. Special files are respected: a character or
// block device (/dev/null, /dev/stdout) or a FIFO is written through, never
// replaced; a symbolic link keeps pointing where it did and the file it points
// to is replaced; a socket is refused. Every failure is a ConfigError naming
// the flag (when given), the path and the operating system's reason, and
// leaves no temporary behind.

#include <filesystem>
#include <string>
#include <string_view>

namespace lifeline {

// One output file being written. Destroying it without Commit() removes the
// temporary (the target keeps its old contents).
class AtomicFile {
 public:
  // `flag` names the option the path came from ("--out"), for messages; empty
  // when the path is not the user's. Creates missing parent directories.
  explicit AtomicFile(const std::filesystem::path& path, std::string flag = {});
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void Write(std::string_view data);
  // Flushes, closes and renames the temporary over the target.
  void Commit();

  const std::filesystem::path& path() const { return path_; }
  // True when the target is a device or FIFO written in place.
  bool in_place() const { return in_place_; }

 private:
  void Flush();
  void WriteAll(std::string_view data);
  [[noreturn]] void Fail(const std::string& action, int err);

  std::filesystem::path path_;    // as given
  std::filesystem::path target_;  // after following symbolic links
  std::filesystem::path tmp_;     // temporary (empty when written in place)
  std::string flag_;
  std::string buffer_;
  int fd_ = -1;
  bool in_place_ = false;
  bool committed_ = false;
};

// Writes `content` to `path` through an AtomicFile.
void WriteFileAtomic(const std::filesystem::path& path, std::string_view content, const std::string& flag = {});

// Makes sure `dir` is a directory, creating it and its parents when missing.
// A path that is a file, or one that cannot be created, is a ConfigError
// naming `flag` (when given), the path and the reason.
void CreateOutputDirectory(const std::filesystem::path& dir, const std::string& flag = {});

}  // namespace lifeline
