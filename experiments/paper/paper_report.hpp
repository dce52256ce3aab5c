#pragma once
// Builds the paper's tables (1, 2, 6, 7), the decode_tps.csv contract and the
// fidelity comparison from computed rows and the published reference.

#include <filesystem>
#include <string>
#include <vector>

#include "reports/table.hpp"
#include "experiments/paper/paper.hpp"

namespace lifeline::cli {

// Largest deviations from the published values over rows that have one.
struct PaperDeviation {
  int compared_rows = 0;
  double max_tps_diff = 0;       // |ours - paper| TPS over all three configs
  double max_gain_diff_pp = 0;   // |ours - paper| Gain%
  double max_capture_diff_pp = 0;  // |ours - capture from the paper's rounded TPS|
  // Capture deviation beyond what the paper's 0.05 TPS rounding allows.
  double max_capture_excess_pp = 0;
  std::string worst_tps;         // where max_tps_diff occurs
};

// Capture% range the paper's rounded TPS (+-0.05) allow.
std::pair<double, double> CaptureRoundingRange(const PaperReferenceRow& r);

PaperDeviation ComparePaper(const std::vector<PaperRow>& rows, const PaperReference& ref);

// The machine-readable contract: device,model,context_tokens,tps_w4,tps_w2,
// tps_w4w2_gateup,gain_pct,capture_pct.
reports::Table DecodeTpsTable(const std::vector<PaperRow>& rows);
// One paper table for one device: our value, the paper's and the difference
// beside every published number.
reports::Table PaperTable(const std::string& title, const std::vector<PaperRow>& rows, const std::string& device,
                          const std::vector<int64_t>& contexts, const PaperReference& ref);
// Paper fidelity vs exact architecture, per device/model/context.
reports::Table FidelityTable(const std::vector<PaperRow>& paper, const std::vector<PaperRow>& exact);

}  // namespace lifeline::cli
