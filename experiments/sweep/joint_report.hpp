#pragma once
// `lifeline report`: joint accuracy + throughput report from a results store.
//  - one table per throughput model (and fidelity/fusion/batch when not the
//    defaults): for each plan and context, TPS per device, Gain% and Capture%
//    (vs the baseline and ceiling plans, default w4 and w2, as in the paper),
//    and the teacher / quantized / recovered perplexity with AR% of the best
//    recovery cell whose report label names that plan;
//  - `recovery`: every finished recovery cell, its swept settings and metrics;
//  - `pareto`: throughput gain of each recovery cell's plan (per throughput
//    model, at one device and context) vs perplexity AR%, with the Pareto
//    front; plotted by gnuplot (pareto.png, pareto.svg; pareto.gp beside).
// Cells whose inputs differ only in input_sha256 (the same model/device/plan
// names, whose files were edited between sweeps) are one result: the newest
// cell (last created) is shown, the older ones are counted as superseded.
// Capture% is left empty, with a note saying why, where TPS(ceiling) equals
// TPS(baseline) (0/0), e.g. when --baseline and --ceiling name one plan.
// Tables go through reports/table.hpp (Markdown, CSV, LaTeX, JSON).

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "experiments/sweep/store.hpp"
#include "reports/table.hpp"

namespace lifeline::sweep {

struct JointReportOptions {
  std::string baseline = "w4";   // Gain% = TPS(plan) / TPS(baseline) - 1
  std::string ceiling = "w2";    // Capture% = (plan - baseline) / (ceiling - baseline)
  std::string pareto_device;     // "" = the first device in the store (by name)
  int64_t pareto_context = 4096; // context of the Pareto plot's gains
};

struct JointReport {
  std::vector<std::pair<std::string, reports::Table>> tables;  // (file stem, table)
  reports::Table pareto;         // model, plan, cell, gain_pct, ar_pct, on_front
  std::string pareto_device;
  int64_t pareto_context = 0;
  int cells = 0, done = 0, failed = 0, infeasible = 0, unfinished = 0;
  int superseded = 0;            // cells left out: a newer cell has the same inputs but newer input files
};

// Throws ConfigError when a flag the user gave (named in `given`) names no
// plan / device / context of the store's throughput cells (the message lists
// those there are), or --pareto-context is not positive.
void CheckJointReportOptions(const std::vector<CellRow>& rows, const JointReportOptions& o,
                             const std::set<std::string>& given);

JointReport BuildJointReport(const std::vector<CellRow>& rows, const JointReportOptions& o);
// Writes the tables, pareto.{dat,gp} (+ .png/.svg when gnuplot runs) and
// summary.md into `out`; returns the files written.
std::vector<std::filesystem::path> WriteJointReport(const JointReport& r, const std::filesystem::path& out);

}  // namespace lifeline::sweep
