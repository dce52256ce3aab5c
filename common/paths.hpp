#pragma once
// Where lifeline finds its data at run time. Each can be overridden by an
// environment variable so installed binaries and tests work from anywhere.

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lifeline {

// The source tree lifeline was built from.
std::filesystem::path SourceDir();
// LIFELINE_MODEL_ZOO_DIR or <source>/model_zoo.
std::filesystem::path ModelZooDir();
// LIFELINE_HWSPEC_DIR or <source>/hwspec.
std::filesystem::path HwspecDir();
// LIFELINE_SHARED_DIR or <source>/../shared: downloadable data only (the stories260K
// weights, the evaluation sets). The paper reference lives in the repository.
std::filesystem::path SharedDir();

// A companion executable of this build (lifeline-recover, lifeline-llama):
// the file named by the environment variable `env_var` when it is set (and
// nothing when it names no file), else `name` beside the running executable
// or up to two folders above it (test binaries live under build/tests/...).
std::optional<std::filesystem::path> FindCompanionExecutable(const std::string& name, const char* env_var);

// The environment lifeline-recover starts with, where this process's does not
// set the variable: its OpenMP threads (LibTorch's intra-op pool) wait
// passively (OMP_WAIT_POLICY=PASSIVE) instead of spinning, so they do not
// starve OpenBLAS's own threads. libgomp reads the variable when it loads,
// which is why whoever starts lifeline-recover sets it. Measured on
// stories260K's training step with 2 threads on 2 cores: 551 -> 249 ms
// (tests/bench/recovery, README Benchmarks).
std::vector<std::pair<std::string, std::string>> LibTorchChildEnvironment();
// Sets those variables in this process (before an exec), unless set.
void SetLibTorchChildEnvironment();

}  // namespace lifeline
