#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "reports/table.hpp"

namespace lifeline::reports {
namespace {

Table Sample() {
  Table t;
  t.title = "Gain 100% & more";
  t.columns = {"model", "context_tokens", "tps"};
  t.rows = {{"qwen3-4b", Cell::Int(1024), Cell(37.2801, 2)}, {"a,b", Cell::Int(2048), Cell()}};
  t.notes = {"note_1"};
  return t;
}

TEST(Reports, CsvQuotesAndLeavesEmptyCells) {
  EXPECT_EQ(ToCsv(Sample()), "model,context_tokens,tps\nqwen3-4b,1024,37.28\n\"a,b\",2048,\n");
}

TEST(Reports, MarkdownAlignsNumbersRight) {
  const std::string md = ToMarkdown(Sample());
  EXPECT_NE(md.find("| --- | ---: | ---: |"), std::string::npos) << md;
  EXPECT_NE(md.find("| qwen3-4b | 1024 | 37.28 |"), std::string::npos) << md;
}

TEST(Reports, LatexUsesBooktabsAndEscapes) {
  const std::string tex = ToLatex(Sample());
  EXPECT_NE(tex.find("\\toprule"), std::string::npos);
  EXPECT_NE(tex.find("\\bottomrule"), std::string::npos);
  EXPECT_NE(tex.find("Gain 100\\% \\& more"), std::string::npos) << tex;
  EXPECT_NE(tex.find("context\\_tokens"), std::string::npos);
  EXPECT_NE(tex.find("{lrr}"), std::string::npos) << tex;
}

TEST(Reports, JsonKeepsFullPrecisionAndNulls) {
  const auto j = nlohmann::json::parse(ToJson(Sample()));
  EXPECT_DOUBLE_EQ(j["rows"][0]["tps"].get<double>(), 37.2801);
  EXPECT_TRUE(j["rows"][1]["tps"].is_null());
  EXPECT_EQ(j["rows"][1]["model"], "a,b");
}

TEST(Reports, NoNegativeZero) { EXPECT_EQ(Cell(-0.0001, 2).Text(), "0.00"); }

TEST(Reports, WriteTableWritesFourFormats) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_reports_test";
  std::filesystem::remove_all(dir);
  const auto files = WriteTable(Sample(), dir, "t");
  ASSERT_EQ(files.size(), 4u);
  for (const auto& f : files) EXPECT_TRUE(std::filesystem::file_size(f) > 0) << f;
}

}  // namespace
}  // namespace lifeline::reports
