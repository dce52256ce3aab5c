#pragma once
// Helpers shared by the recovery I/O tests.

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "recovery/eval/text_metrics.hpp"

namespace lifeline::recovery::testing {

// A fresh empty directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("lifeline_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// True when `path` exists; otherwise fails under env CI and skips elsewhere.
inline bool SharedPathPresent(const std::filesystem::path& path) {
  if (std::filesystem::exists(path)) return true;
  if (std::getenv("CI"))
    ADD_FAILURE() << "shared file " << path << " missing (required when CI is set)";
  return false;
}

}  // namespace lifeline::recovery::testing

// Skips the test (or fails it under CI) when the shared file is absent.
#define LIFELINE_REQUIRE_SHARED(path)                                               \
  do {                                                                              \
    if (!::lifeline::recovery::testing::SharedPathPresent(path))                    \
      GTEST_SKIP() << "shared data " << (path)                                      \
                   << " absent; set LIFELINE_SHARED_DIR to run this test";          \
  } while (0)
