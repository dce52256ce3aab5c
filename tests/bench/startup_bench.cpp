// Start-up cost of the `lifeline` executable, as a user meets it: wall time
// and peak resident memory of whole commands, each run N times in a fresh
// process. Reports the median and worst, and the ratio to the targets
// (20 ms wall, 20 MB RSS) — a benchmark, not a test: nothing here fails.
//
//   build/tests/bench/startup_bench [--lifeline build/lifeline] [--runs 30] [--json FILE]

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/paths.hpp"
#include "common/subprocess.hpp"

namespace {

struct Sample {
  double wall_s;
  double max_rss_bytes;
};

Sample RunOnce(const std::vector<std::string>& argv) {
  lifeline::SpawnOptions o;
  o.log = "/dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = lifeline::SpawnProcess(argv, o);
  const lifeline::ProcessExit e = lifeline::WaitProcess(pid);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (e.signaled || e.code != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += " " + a;
    throw std::runtime_error("startup_bench:" + cmd + ": " + e.Describe());
  }
  return {wall, static_cast<double>(e.max_rss_bytes)};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string exe;
  std::string json_out;
  int runs = 30;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lifeline" && i + 1 < argc) exe = argv[++i];
    else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::stoi(argv[++i]));
    else if (a == "--json" && i + 1 < argc) json_out = argv[++i];
    else {
      std::fprintf(stderr, "usage: startup_bench [--lifeline PATH] [--runs N] [--json FILE]\n");
      return 2;
    }
  }
  if (exe.empty()) {
    const auto found = lifeline::FindCompanionExecutable("lifeline", "LIFELINE_BINARY");
    if (!found) {
      std::fprintf(stderr, "startup_bench: no lifeline executable found; pass --lifeline PATH\n");
      return 2;
    }
    exe = found->string();
  }
  constexpr double kTargetWallS = 0.020, kTargetRssBytes = 20e6;
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"lifeline --version", {exe, "--version"}},
      {"lifeline explain (qwen3-4b, device_a, w4w2-gateup, 4096)",
       {exe, "explain", "--model", "qwen3-4b", "--device", "device_a", "--plan", "w4w2-gateup", "--context", "4096"}},
      {"lifeline whatif (qwen3-4b, device_a, bandwidth 150 GB/s)",
       {exe, "whatif", "--model", "qwen3-4b", "--device", "device_a", "--plan", "w4w2-gateup", "--context", "4096",
        "--set", "memory_bandwidth_gb_per_s=150"}},
  };
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-58s %10s %10s %10s %9s %9s\n", "command", "median_ms", "max_ms", "rss_mb", "wall/20ms", "rss/20MB");
  for (const auto& [name, cmd] : commands) {
    RunOnce(cmd);  // warm the page cache
    std::vector<double> wall, rss;
    for (int r = 0; r < runs; ++r) {
      const Sample s = RunOnce(cmd);
      wall.push_back(s.wall_s);
      rss.push_back(s.max_rss_bytes);
    }
    const double med = Median(wall), worst = *std::max_element(wall.begin(), wall.end());
    const double peak = *std::max_element(rss.begin(), rss.end());
    std::printf("%-58s %10.2f %10.2f %10.2f %9.2f %9.2f\n", name.c_str(), med * 1e3, worst * 1e3, peak / 1e6,
                med / kTargetWallS, peak / kTargetRssBytes);
    rows.push_back({{"command", name},
                    {"runs", runs},
                    {"median_wall_s", med},
                    {"max_wall_s", worst},
                    {"max_rss_bytes", peak},
                    {"wall_ratio_to_20ms", med / kTargetWallS},
                    {"rss_ratio_to_20mb", peak / kTargetRssBytes}});
  }
  if (!json_out.empty()) std::ofstream(json_out) << rows.dump(2) << "\n";
  return 0;
}
