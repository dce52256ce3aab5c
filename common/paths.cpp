#include "common/paths.hpp"

#include <unistd.h>

#include <cstdlib>

namespace lifeline {
namespace {
std::filesystem::path FromEnv(const char* var, const std::filesystem::path& fallback) {
  const char* v = std::getenv(var);
  if (v != nullptr && *v != '\0') return std::filesystem::path(v);
  return fallback;
}
}  // namespace

std::filesystem::path SourceDir() { return FromEnv("LIFELINE_SOURCE_DIR", LIFELINE_SOURCE_DIR); }
std::filesystem::path ModelZooDir() { return FromEnv("LIFELINE_MODEL_ZOO_DIR", SourceDir() / "model_zoo"); }
std::filesystem::path HwspecDir() { return FromEnv("LIFELINE_HWSPEC_DIR", SourceDir() / "hwspec"); }
std::filesystem::path SharedDir() {
  return FromEnv("LIFELINE_SHARED_DIR", (SourceDir() / ".." / "shared").lexically_normal());
}

std::optional<std::filesystem::path> FindCompanionExecutable(const std::string& name, const char* env_var) {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv(env_var); env != nullptr && *env != '\0') {
    std::error_code ec;
    if (fs::is_regular_file(env, ec)) return fs::path(env);
    return std::nullopt;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return std::nullopt;
  fs::path dir = self.parent_path();
  for (int up = 0; up <= 2; ++up, dir = dir.parent_path()) {
    const fs::path cand = dir / name;
    if (fs::is_regular_file(cand, ec) && access(cand.c_str(), X_OK) == 0) return cand;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> LibTorchChildEnvironment() {
  return {{"OMP_WAIT_POLICY", "PASSIVE"}};
}

void SetLibTorchChildEnvironment() {
  for (const auto& [name, value] : LibTorchChildEnvironment()) setenv(name.c_str(), value.c_str(), /*overwrite=*/0);
}

}  // namespace lifeline
