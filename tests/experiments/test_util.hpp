#pragma once
// Helpers shared by the sweep tests: temporary directories, matrix files and
// running the lifeline binary.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "experiments/sweep/matrix.hpp"
#include "common/yaml_util.hpp"

namespace lifeline::sweep::testing {

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              ("lifeline_" + name + "_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

inline Matrix ParseText(const std::string& yaml, const std::string& preset = "") {
  return ParseMatrix(LoadYamlString(yaml, "test.yaml"), "test.yaml", preset);
}

}  // namespace lifeline::sweep::testing
