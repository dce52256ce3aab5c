// `lifeline whatif` on a system of devices: --system, --tp/--pp/--ep,
// --output-tokens, sweeps over batch and layout, and --best.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reports/table.hpp"
#include "roofline/whatif/serving.hpp"

namespace lifeline::cli {

struct ServingCli {
  std::string system;          // hwspec/systems name or YAML path
  int64_t tp = 1, pp = 1, ep = 1, micro_batches = 0;
  int64_t output_tokens = 0;   // request length for request_latency_s
  bool best = false;
  double max_tpot_s = std::numeric_limits<double>::infinity();
  double max_ttft_s = std::numeric_limits<double>::infinity();
  int64_t max_batch = kMaxBatch;
  // Any serving flag given: whatif evaluates the system instead of one device.
  bool Active() const {
    return !system.empty() || tp != 1 || pp != 1 || ep != 1 || micro_batches != 0 || output_tokens != 0 || best;
  }
};

void AddServingOptions(CLI::App* sub, ServingCli& o);

// The tables of a serving what-if: one layout, a sweep (--sweep over batch,
// tp, pp, ep, micro_batches, output_tokens and any whatif key; rows that do
// not fit are kept and marked), or --best. `device_given` is true when the
// user passed --device (refused beside --system). With `html_dir`, also
// writes html_dir/index.html with the tables and, for a sweep over `batch`, the
// throughput-vs-latency curve (figures/throughput_latency.*, gnuplot).
std::vector<reports::Table> ServingWhatif(whatif::RunSpec run, bool device_given, const ServingCli& s,
                                          const std::vector<std::string>& sets,
                                          const std::vector<std::string>& sweeps, const std::string& html_dir = {});

}  // namespace lifeline::cli
