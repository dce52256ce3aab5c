// `lifeline measure` / `validate` refuse what they cannot do, with the reason,
// in every build (with or without llama.cpp).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/subprocess.hpp"

namespace lifeline {
namespace {

namespace fs = std::filesystem;

ProcessResult Lifeline(std::vector<std::string> args, const std::string& driver_env = "") {
  std::vector<std::string> argv = {"env"};
  if (!driver_env.empty()) argv.push_back("LIFELINE_LLAMA_DRIVER=" + driver_env);
  argv.push_back(LIFELINE_BINARY);
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv, /*merge_stderr=*/true);
}

fs::path Tmp(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("lifeline_measure_cli_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  return p;
}

TEST(MeasureCli, NoLlamaCppSaysHowToInstallIt) {
  const fs::path out = Tmp("nodriver");
  const auto r = Lifeline({"measure", "--model", "stories260k", "--plan", "gguf-f32", "--context", "16", "--out",
                           out.string(), "--gguf-cache", (out / "cache").string()},
                          "/nonexistent/lifeline-llama");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("llama.cpp is not installed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("scripts/setup.sh --with-llama-cpp"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(MeasureCli, APlanWithoutGgmlFormatsIsRefusedBeforeMeasuring) {
  const fs::path out = Tmp("noformat");
  const auto r = Lifeline({"measure", "--model", "qwen3-0.6b", "--plan", "w4", "--context", "512", "--out",
                           out.string(), "--gguf-cache", (out / "cache").string()});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("no ggml storage type"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gguf-"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(MeasureCli, AModelLlamaCppCannotRunHereIsRefused) {
  const fs::path out = Tmp("moe");
  const auto r = Lifeline({"measure", "--model", "gpt-oss-20b", "--plan", "gguf-w4", "--context", "512", "--out",
                           out.string(), "--gguf-cache", (out / "cache").string()});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("gpt_oss"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(MeasureCli, ContextsAreValidated) {
  const auto r = Lifeline({"measure", "--model", "qwen3-0.6b", "--plan", "gguf-w4", "--context", "512,abc"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--context"), std::string::npos) << r.out;
  const auto big = Lifeline({"measure", "--model", "stories260k", "--plan", "gguf-f32", "--context", "100000"},
                            "/nonexistent/lifeline-llama");
  EXPECT_EQ(big.status, 2) << big.out;
  EXPECT_NE(big.out.find("max_position_embeddings"), std::string::npos) << big.out;
}

}  // namespace
}  // namespace lifeline
