// HTML report, gnuplot figures and `lifeline paper`'s figures.

#include <gtest/gtest.h>

#include "tests/require.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "reports/html.hpp"
#include "reports/plot.hpp"
#include "common/error.hpp"
#include "tests/whatif/test_util.hpp"

namespace lifeline::reports {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Html, EscapesTextAndMarksImageLoading) {
  HtmlReport r;
  r.title = "a <b> & \"c\"";
  Table t;
  t.title = "T";
  t.columns = {"name", "value"};
  t.rows.push_back({"x<y", Cell(1.5, 2)});
  r.sections.push_back({"S", {"p & q"}, {t}, {{"figures/a.png", "cap", "figures/a.gp"}}});
  const std::string h = ToHtml(r);
  EXPECT_NE(h.find("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>"), std::string::npos);
  EXPECT_NE(h.find("<td>x&lt;y</td><td class=\"n\">1.50</td>"), std::string::npos) << h;
  EXPECT_NE(h.find("<img src=\"figures/a.png\""), std::string::npos);
  EXPECT_NE(h.find("href=\"figures/a.gp\""), std::string::npos);
  EXPECT_NE(h.find("naturalWidth"), std::string::npos);
}

TEST(Plot, LineChartWritesScriptDataPngAndSvg) {
  LIFELINE_REQUIRE(GnuplotAvailable(), "gnuplot (scripts/setup.sh installs it)");
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_plot_test";
  std::filesystem::remove_all(dir);
  LineChart c;
  c.title = "t \"quoted\"";
  c.xlabel = "context (tokens)";
  c.ylabel = "tokens/s";
  c.logx = true;
  c.series.push_back({"a_b", {1024, 2048, 4096}, {3, 2, 1}, ""});
  const Figure f = WriteLineChart(c, dir, "line");
  for (const auto& p : {f.script, f.data, f.png, f.svg}) {
    EXPECT_TRUE(std::filesystem::exists(p)) << p;
    EXPECT_GT(std::filesystem::file_size(p), 0u) << p;
  }
  const std::string png = Slurp(f.png);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_NE(Slurp(f.svg).find("<svg"), std::string::npos);
  EXPECT_NE(Slurp(f.script).find("\"line.dat\""), std::string::npos);  // relative: re-runnable in place
  // A broken script is an error, not a silent missing image.
  std::ofstream(dir / "bad.gp") << "plot 'no-such-file.dat'\n";
  EXPECT_THROW(RenderGnuplot(dir, "bad"), lifeline::Error);
}

TEST(PaperFigures, PaperWritesFiguresAndIndex) {
  LIFELINE_REQUIRE(GnuplotAvailable(), "gnuplot (scripts/setup.sh installs it)");
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_paper_figures";
  std::filesystem::remove_all(dir);
  const auto r = lifeline::testing::Exec("paper --out " + dir.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string html = Slurp(dir / "index.html");
  for (const char* stem : {"tps_vs_context_device_a", "tps_vs_context_device_b", "gain_vs_context",
                           "capture_vs_context", "roofline_device_a_qwen3-4b", "breakdown_device_a",
                           "gain_heatmap_bandwidth_tops"}) {
    for (const char* ext : {".png", ".svg", ".gp", ".dat"})
      EXPECT_TRUE(std::filesystem::exists(dir / "figures" / (std::string(stem) + ext))) << stem << ext;
    EXPECT_NE(html.find(std::string("figures/") + stem + ".png"), std::string::npos) << stem;
  }
  // The existing outputs are still there.
  EXPECT_TRUE(std::filesystem::exists(dir / "decode_tps.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir / "table1_device_a.md"));
}

}  // namespace
}  // namespace lifeline::reports
