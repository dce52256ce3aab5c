#include "common/paths.hpp"

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

}  // namespace lifeline
