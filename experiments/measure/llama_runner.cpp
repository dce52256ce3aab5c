#include "experiments/measure/llama_runner.hpp"

#include <unistd.h>

#include <cstdlib>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "common/subprocess.hpp"

namespace lifeline::measure {

namespace fs = std::filesystem;

std::optional<fs::path> FindLlamaDriver() { return FindCompanionExecutable("lifeline-llama", "LIFELINE_LLAMA_DRIVER"); }

nlohmann::json RunLlamaDriver(const std::vector<std::string>& args) {
  const auto driver = FindLlamaDriver();
  if (!driver) {
    throw Error(
        "llama.cpp is not installed in this build (no lifeline-llama beside the lifeline executable, and "
        "LIFELINE_LLAMA_DRIVER is unset or names no file): run `scripts/setup.sh --with-llama-cpp`, which installs "
        "node-llama-cpp from npm and builds its llama.cpp natively");
  }
  std::vector<std::string> argv{driver->string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const ProcessResult r = RunProcess(argv);
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  if (r.status != 0) {
    std::string err = r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    throw Error("llama.cpp measurement failed (exit " + std::to_string(r.status) + "): " +
                (err.empty() ? std::string("no message") : err) + "\n  command: " + cmd);
  }
  try {
    return nlohmann::json::parse(r.out);
  } catch (const nlohmann::json::exception& e) {
    throw Error("lifeline-llama printed no valid JSON (" + std::string(e.what()) + ")\n  command: " + cmd);
  }
}

}  // namespace lifeline::measure
