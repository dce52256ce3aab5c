#pragma once
// A self-contained HTML report bundling tables and figures (figures are
// referenced relative to the report, so the folder can be moved or zipped).
// A small script sets the document title's suffix to "[images ok N]" once every
// image has loaded with a non-zero size, or "[images broken K of N]" — the
// headless-browser test reads it from the dumped DOM.

#include <string>
#include <vector>

#include "reports/table.hpp"

namespace lifeline::reports {

struct HtmlImage {
  std::string src;      // path relative to the report (prefer the PNG)
  std::string caption;  // one line under the figure
  std::string script;   // relative path of the gnuplot script, linked under it
};

struct HtmlSection {
  std::string heading;
  std::vector<std::string> paragraphs;  // plain text (escaped)
  std::vector<Table> tables;
  std::vector<HtmlImage> images;
};

struct HtmlReport {
  std::string title;
  std::vector<std::string> intro;  // plain text paragraphs
  std::vector<HtmlSection> sections;
};

std::string HtmlEscape(const std::string& s);
std::string TableToHtml(const Table& t);
std::string ToHtml(const HtmlReport& r);

}  // namespace lifeline::reports
