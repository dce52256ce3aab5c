#pragma once
// Figures rendered with gnuplot. Each figure is written as DIR/STEM.dat (the
// numbers, tab separated), DIR/STEM.gp (the script, kept so users can restyle
// it: edit it and run `gnuplot STEM.gp` in DIR) and DIR/STEM.png + STEM.svg.

#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::reports {

struct Series {
  std::string label;          // legend entry
  std::vector<double> x, y;
  std::string style;          // extra gnuplot style ("dt 2 lc rgb '#1b9e77'"), may be empty
  bool points_only = false;   // a scatter: markers without connecting lines
};

struct LineChart {
  std::string title, xlabel, ylabel;  // labels carry units: "context (tokens)"
  bool logx = false;                  // log2 x axis with the data's x values as tics
  bool logxy_decimal = false;         // log10 x and y axes (measured-vs-forecast scatters)
  std::vector<Series> series;
  bool key_outside = true;            // legend right of the plot (keeps lines readable)
  bool yzero_line = false;            // draw y = 0 when true
};

struct RooflinePoint {
  std::string label;                  // operator group
  double intensity_ops_per_byte = 0;  // x
  double achieved_ops_per_s = 0;      // y: ops / time
  bool compute_bound = false;
};
struct RooflineChart {
  std::string title;
  double peak_ops_per_s = 0, bandwidth_bytes_per_s = 0;            // the device's peaks
  double effective_ops_per_s = 0, effective_bandwidth_bytes_per_s = 0;  // with efficiencies
  std::vector<RooflinePoint> points;  // largest first; the first `labelled` get text labels
  size_t labelled = 6;
};

struct StackedBars {
  std::string title, ylabel;
  std::vector<std::string> categories;        // one bar each
  std::vector<std::string> segments;          // stacked parts (legend)
  std::vector<std::vector<double>> values;    // [category][segment]
};

struct Heatmap {
  std::string title, xlabel, ylabel, zlabel;
  std::vector<double> x, y;                   // grid coordinates (uniform steps)
  std::vector<std::vector<double>> z;         // [iy][ix]
};

// Groups of labelled points, each group with its Pareto front drawn as a line
// (the joint report's throughput gain against accuracy recovered).
struct ParetoPoint {
  double x = 0, y = 0;
  std::string label;      // written quoted in the data (e.g. the plan)
  std::string id;         // written after the label (e.g. the cell id)
  bool on_front = false;  // part of the group's Pareto front
};
struct ParetoGroup {
  std::string name;  // legend entry
  std::vector<ParetoPoint> points;
};
struct ParetoChart {
  std::string title, xlabel, ylabel;
  // Column names for the data files' comment lines, and what a group is.
  std::string x_column, y_column, label_column, id_column, group_kind;
  std::string empty_note;  // shown in the figure when there are no groups
  std::vector<ParetoGroup> groups;
};

struct Figure {
  std::filesystem::path script, data, png, svg;
};

// Whether `gnuplot` can be run (figures are skipped with a note when not).
bool GnuplotAvailable();

Figure WriteLineChart(const LineChart& c, const std::filesystem::path& dir, const std::string& stem);
Figure WriteRooflineChart(const RooflineChart& c, const std::filesystem::path& dir, const std::string& stem);
Figure WriteStackedBars(const StackedBars& c, const std::filesystem::path& dir, const std::string& stem);
Figure WriteHeatmap(const Heatmap& c, const std::filesystem::path& dir, const std::string& stem);
// Writes DIR/STEM.dat (x y "label" id, one block per group), DIR/STEM_front.dat
// (each group's front sorted by x, one block per group) and DIR/STEM.gp, then
// renders STEM.png and STEM.svg; throws lifeline::Error when gnuplot fails
// (the data and script are written by then).
Figure WriteParetoChart(const ParetoChart& c, const std::filesystem::path& dir, const std::string& stem);

// Runs `gnuplot STEM.gp` in DIR (the one place gnuplot is run, through the
// common subprocess launcher); throws lifeline::Error with gnuplot's output
// when it fails or an image is missing.
void RenderGnuplot(const std::filesystem::path& dir, const std::string& stem);

}  // namespace lifeline::reports
