#include "reports/html.hpp"

#include <fmt/format.h>

#include <variant>

namespace lifeline::reports {

std::string HtmlEscape(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      default: r += c;
    }
  }
  return r;
}

std::string TableToHtml(const Table& t) {
  std::string o = "<div class=\"tw\"><table>\n";
  if (!t.title.empty()) o += "<caption>" + HtmlEscape(t.title) + "</caption>\n";
  o += "<thead><tr>";
  for (size_t c = 0; c < t.columns.size(); ++c) o += "<th>" + HtmlEscape(t.Header(c)) + "</th>";
  o += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    o += "<tr>";
    for (size_t c = 0; c < t.columns.size(); ++c) {
      const Cell cell = c < row.size() ? row[c] : Cell();
      const bool num = std::holds_alternative<double>(cell.value);
      o += num ? "<td class=\"n\">" : "<td>";
      o += HtmlEscape(cell.Text()) + "</td>";
    }
    o += "</tr>\n";
  }
  o += "</tbody>\n</table></div>\n";
  for (const auto& n : t.notes) o += "<p class=\"note\">" + HtmlEscape(n) + "</p>\n";
  return o;
}

std::string ToHtml(const HtmlReport& r) {
  std::string o = fmt::format(R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{0}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: .85em; }}
caption {{ text-align: left; font-weight: bold; padding-bottom: .3em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: left; }}
th {{ background: #f3f3f3; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: .9em; color: #444; }} p.note {{ font-size: .85em; color: #555; margin: .2em 0; }}
nav a {{ margin-right: 1em; }} div.tw {{ overflow-x: auto; }}
</style>
</head>
<body>
<h1>{0}</h1>
)",
                              HtmlEscape(r.title));
  for (const auto& p : r.intro) o += "<p>" + HtmlEscape(p) + "</p>\n";
  if (r.sections.size() > 1) {
    o += "<nav>";
    for (size_t i = 0; i < r.sections.size(); ++i)
      o += fmt::format("<a href=\"#s{}\">{}</a>", i, HtmlEscape(r.sections[i].heading));
    o += "</nav>\n";
  }
  for (size_t i = 0; i < r.sections.size(); ++i) {
    const HtmlSection& s = r.sections[i];
    o += fmt::format("<h2 id=\"s{}\">{}</h2>\n", i, HtmlEscape(s.heading));
    for (const auto& p : s.paragraphs) o += "<p>" + HtmlEscape(p) + "</p>\n";
    for (const auto& img : s.images) {
      o += fmt::format("<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}", HtmlEscape(img.src),
                       HtmlEscape(img.caption), HtmlEscape(img.caption));
      if (!img.script.empty())
        o += fmt::format(" (<a href=\"{}\">gnuplot script</a>)", HtmlEscape(img.script));
      o += "</figcaption></figure>\n";
    }
    for (const auto& t : s.tables) o += TableToHtml(t);
  }
  o += R"(<script>
// Marks the title once every image has loaded (checked by lifeline's headless-browser test).
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.title += broken === 0 ? " [images ok " + imgs.length + "]"
                                 : " [images broken " + broken + " of " + imgs.length + "]";
  document.body.setAttribute("data-images", broken === 0 ? "ok" : "broken");
});
</script>
</body>
</html>
)";
  return o;
}

}  // namespace lifeline::reports
