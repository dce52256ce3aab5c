#pragma once
// Figures and HTML reports of `lifeline paper` and `lifeline whatif --html`.

#include <filesystem>
#include <string>
#include <vector>

#include "experiments/whatif_tables.hpp"
#include "reports/html.hpp"
#include "reports/plot.hpp"
#include "reports/table.hpp"
#include "experiments/paper/paper.hpp"

namespace lifeline::cli {

// Coarse operator classes for the stacked time breakdown.
std::string OpClass(const std::string& group_name, const std::string& kind);

// The roofline chart and stacked breakdown of one analysed point.
reports::RooflineChart RooflineOf(const whatif::PointAnalysis& a, const whatif::Setting& s);

// Writes the paper's figures into DIR (TPS vs context per device; Gain% and
// Capture% vs context; roofline of Qwen3-4B per device; stacked per-operator
// breakdown per device; Gain% heatmap over bandwidth x TOPS) and returns them
// as report images with paths relative to `relative_to`.
std::vector<reports::HtmlImage> WritePaperFigures(const std::vector<PaperRow>& rows,
                                                  const std::vector<DeviceSpec>& devices,
                                                  const std::vector<ModelArch>& models,
                                                  const std::filesystem::path& dir,
                                                  const std::filesystem::path& relative_to);

// `lifeline paper`: writes OUT/figures/ (WritePaperFigures) and OUT/index.html
// bundling the figures with Tables 1/2 (with the published values) and the
// fidelity comparison. Returns the files written; without gnuplot the report
// has the tables only and says so.
std::vector<std::filesystem::path> WritePaperHtml(const std::filesystem::path& out, const std::vector<PaperRow>& paper,
                                                  const std::vector<PaperRow>& exact,
                                                  const std::vector<DeviceSpec>& devices,
                                                  const std::vector<ModelArch>& models, const PaperReference& ref);

// Writes DIR/index.html (+ DIR/figures/) for a what-if run: the analysis
// tables, roofline and breakdown of the base point, and a line chart (one
// numeric axis) or heatmap (two numeric axes) of the sweep. Returns the path.
std::filesystem::path WriteWhatifHtml(const whatif::Scenario& scenario, const std::vector<whatif::Override>& fixed,
                                      const std::vector<whatif::SweepAxis>& axes, const std::string& baseline,
                                      const std::string& ceiling, const std::filesystem::path& dir, size_t top_ops);

}  // namespace lifeline::cli
