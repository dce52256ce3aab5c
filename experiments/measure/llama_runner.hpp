#pragma once
// Runs lifeline-llama (experiments/measure/llama_driver.cpp), the native
// program linked against llama.cpp, and reads the JSON it prints. lifeline
// itself never links llama.cpp: the driver exists only in builds made after
// `scripts/setup.sh --with-llama-cpp`.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lifeline::measure {

// LIFELINE_LLAMA_DRIVER, or lifeline-llama beside the running executable;
// nullopt when neither exists.
std::optional<std::filesystem::path> FindLlamaDriver();

// Runs the driver with `args` and parses its standard output. Throws
// lifeline::Error naming the command and quoting the driver's error output
// when it fails, or saying how to install llama.cpp when there is no driver.
nlohmann::json RunLlamaDriver(const std::vector<std::string>& args);

}  // namespace lifeline::measure
