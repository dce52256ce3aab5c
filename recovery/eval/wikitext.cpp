#include "recovery/eval/wikitext.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/error.hpp"
#include "recovery/eval/text_metrics.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;

// Decodes the UTF-8 character at s[i]; `len` receives its byte length. A
// malformed byte decodes as itself, one byte long.
uint32_t DecodeUtf8(const std::string& s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return c;
  }
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      *len = 1;
      return c;
    }
    cp = (cp << 6) | (b(i + k) & 0x3Fu);
  }
  *len = n;
  return cp;
}

// Python's str.isspace() (and re's \s on str patterns).
bool IsPySpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Python's str.strip(): leading and trailing whitespace characters removed.
std::string PyStrip(const std::string& s) {
  size_t first = s.size(), last_end = 0;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    if (!IsPySpace(DecodeUtf8(s, i, &len))) {
      if (first == s.size()) first = i;
      last_end = i + len;
    }
  }
  return first == s.size() ? std::string() : s.substr(first, last_end - first);
}

std::string ReplaceAll(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t f = s.find(from); f != std::string::npos; f = s.find(from, pos)) {
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// re.sub(r"O\s*([^C]*?)\s*C", r"O\1C", s): from each O to the next C, the
// text between them stripped.
std::string TightenPairs(const std::string& s, char open, char close) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == open) {
      const size_t j = s.find(close, i + 1);
      if (j != std::string::npos) {
        out += open;
        out += PyStrip(s.substr(i + 1, j - i - 1));
        out += close;
        i = j + 1;
        continue;
      }
    }
    out += s[i++];
  }
  return out;
}

}  // namespace

std::vector<std::string> SplitWikitextDocuments(const std::string& raw) {
  std::vector<std::string> docs;
  std::vector<std::string> lines;
  for (size_t pos = 0;;) {
    const size_t nl = raw.find('\n', pos);
    lines.push_back(raw.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  auto join = [](const std::vector<std::string>& ls) {
    std::string page;
    for (size_t i = 0; i < ls.size(); ++i) page += (i ? "\n" : "") + ls[i];
    return page;
  };
  std::vector<std::string> current;
  for (const std::string& line : lines) {
    const std::string rline = PyStrip(ReplaceAll(ReplaceAll(line, "= = =", "==="), "= =", "=="));
    if (rline.starts_with("= ") && rline.ends_with(" =")) {
      const std::string page = join(current);
      if (!PyStrip(page).empty()) docs.push_back(page);
      current.clear();
    }
    current.push_back(line);
  }
  docs.push_back(join(current));
  return docs;
}

std::vector<std::string> LoadWikitext(const fs::path& data_dir, int64_t limit) {
  const fs::path path = data_dir / "wikitext2" / "wiki.test.raw";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open data file", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  // Python's text mode (the dataset script's open()) reads "\r\n" and "\r" as "\n".
  std::string text;
  const std::string raw = ss.str();
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\r') {
      text.push_back(raw[i]);
      continue;
    }
    text.push_back('\n');
    if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
  }
  std::vector<std::string> docs = SplitWikitextDocuments(text);
  if (limit > 0 && static_cast<int64_t>(docs.size()) > limit) docs.resize(static_cast<size_t>(limit));
  return docs;
}

std::string WikitextDetokenize(const std::string& document) {
  std::string s = ReplaceAll(document, "s '", "s'");
  // re.sub(r"/' [0-9]/", r"/'[0-9]/", s): the replacement is literal.
  for (size_t f = s.find("/' "); f != std::string::npos; f = s.find("/' ", f + 1)) {
    if (f + 4 < s.size() && s[f + 3] >= '0' && s[f + 3] <= '9' && s[f + 4] == '/')
      s.replace(f, 5, "/'[0-9]/");
  }
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."}, {" : ", ": "}, {" ; ", "; "},
           {" . ", ". "}, {" ! ", "! "}, {" ? ", "? "}, {" , ", ", "}})
    s = ReplaceAll(s, from, to);
  s = TightenPairs(s, '(', ')');
  s = TightenPairs(s, '[', ']');
  s = TightenPairs(s, '{', '}');
  s = TightenPairs(s, '"', '"');
  s = TightenPairs(s, '\'', '\'');
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="},
           {" \xC2\xB0 ", "\xC2\xB0"},  // " ° " -> "°" (chr(176))
           {" \n", "\n"}, {"\n ", "\n"}, {" N ", " 1 "}, {" 's", "'s"}})
    s = ReplaceAll(s, from, to);
  return s;
}

int64_t WikitextWordCount(const std::string& document) {
  int64_t runs = 0;
  bool in_space = false;
  for (size_t i = 0, len = 0; i < document.size(); i += len) {
    const bool space = IsPySpace(DecodeUtf8(document, i, &len));
    if (space && !in_space) ++runs;
    in_space = space;
  }
  return runs + 1;
}

std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> RollingWindows(
    const std::vector<int64_t>& tokens, int64_t prefix_id, int64_t max_length) {
  LIFELINE_CHECK(max_length >= 1, "a rolling window needs at least one position");
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> out;
  const auto n = static_cast<int64_t>(tokens.size());
  if (n == 0) return out;
  auto slice = [&](int64_t a, int64_t b) {
    return std::vector<int64_t>(tokens.begin() + a, tokens.begin() + b);
  };
  // First window: every token from the prefix, up to max_length of them.
  const int64_t first = std::min(max_length, n);
  out.push_back({{prefix_id}, slice(0, first)});
  // Later windows: max_length inputs ending just before the window's end;
  // disjoint, so the context is the inputs before the first predicted token.
  for (int64_t predicted = first; predicted < n;) {
    const int64_t pred = std::min(n - predicted, max_length);
    const int64_t end = predicted + pred;
    out.push_back({slice(end - max_length - 1, end - pred), slice(end - pred, end)});
    predicted = end;
  }
  return out;
}

TaskResult ScoreWikitext(const std::vector<std::string>& documents, const Tokenizer& tokenizer,
                         const LogitsFn& model, const LoglikelihoodOptions& options) {
  if (documents.empty()) throw ConfigError("wikitext: no document to score");
  const int64_t prefix = tokenizer.BosId() >= 0 ? tokenizer.BosId() : tokenizer.EosId();
  LIFELINE_CHECK(prefix >= 0, "wikitext needs a BOS or EOS token to start each document");
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> requests;
  double words = 0, bytes = 0;
  for (size_t d = 0; d < documents.size(); ++d) {
    words += static_cast<double>(WikitextWordCount(documents[d]));
    bytes += static_cast<double>(documents[d].size());
    const auto ids = tokenizer.Encode(WikitextDetokenize(documents[d]), false);
    for (auto& w : RollingWindows(ids, prefix, options.max_length)) {
      requests.push_back(std::move(w));
    }
  }
  const auto ll = ComputeLoglikelihoodsFromIds(requests, model, options);
  double logprob = 0, tokens = 0;
  for (const LoglikelihoodResult& r : ll) {
    logprob += r.logprob;
    tokens += static_cast<double>(r.tokens);
  }
  TaskResult result;
  result.task = "wikitext";
  result.items = static_cast<int64_t>(documents.size());
  result.metrics["word_perplexity"] = std::exp(-logprob / words);
  result.metrics["byte_perplexity"] = std::exp(-logprob / bytes);
  result.metrics["bits_per_byte"] = -logprob / bytes / std::log(2.0);
  result.metrics["token_perplexity"] = tokens > 0 ? std::exp(-logprob / tokens) : 1.0;
  result.sizes["words"] = words;
  result.sizes["bytes"] = bytes;
  result.sizes["tokens"] = tokens;
  return result;
}

TaskResult RunWikitext(const Tokenizer& tokenizer, const LogitsFn& model,
                       const LoglikelihoodOptions& options, int64_t limit, const fs::path& data_dir) {
  const fs::path dir = data_dir.empty() ? DefaultSharedDir() / "data" : data_dir;
  return ScoreWikitext(LoadWikitext(dir, limit), tokenizer, model, options);
}

}  // namespace lifeline::recovery
