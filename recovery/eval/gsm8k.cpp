#include "recovery/eval/gsm8k.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "common/error.hpp"
#include "recovery/eval/jsonl.hpp"
#include "recovery/eval/text_metrics.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;

constexpr const char* kInvalid = "[invalid]";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// The flexible regex's class [$0-9.,].
bool InFlexibleClass(char c) { return IsDigit(c) || c == '$' || c == '.' || c == ','; }
// The strict regex's class [0-9.,].
bool InStrictClass(char c) { return IsDigit(c) || c == '.' || c == ','; }

size_t RunLength(const std::string& s, size_t i, bool (*in_class)(char)) {
  size_t n = 0;
  while (i + n < s.size() && in_class(s[i + n])) ++n;
  return n;
}

std::string EraseChar(const std::string& s, char c) {
  std::string out;
  for (char x : s)
    if (x != c) out.push_back(x);
  return out;
}

}  // namespace

std::vector<Gsm8kItem> LoadGsm8k(const fs::path& data_dir) {
  const fs::path path = data_dir / "gsm8k" / "test.jsonl";
  std::vector<Gsm8kItem> items;
  ForEachJsonLine(path, 0, [&](const nlohmann::json& j, int64_t line) {
    items.push_back({JsonLineString(j, path, line, "question"), JsonLineString(j, path, line, "answer")});
  });
  return items;
}

std::string Gsm8kPrompt(const std::vector<Gsm8kItem>& items, size_t index) {
  LIFELINE_CHECK(index >= static_cast<size_t>(kGsm8kShots) && index < items.size(),
                 "a GSM8K request needs the shots before it");
  std::string prompt;
  for (size_t i = 0; i < static_cast<size_t>(kGsm8kShots); ++i)
    prompt += "Question: " + items[i].question + "\nAnswer: " + items[i].answer + "\n\n";
  return prompt + "Question: " + items[index].question + "\nAnswer:";
}

const std::vector<std::string>& Gsm8kStopSequences() {
  static const std::vector<std::string> stops = {"Question:", "</s>", "<|im_end|>"};
  return stops;
}

std::string Gsm8kCutAtStops(const std::string& text) {
  std::string out = text;
  for (const std::string& stop : Gsm8kStopSequences())
    if (const size_t f = out.find(stop); f != std::string::npos) out.resize(f);
  return out;
}

std::string Gsm8kStrictExtract(const std::string& text) {
  // "#### (\-?[0-9\.\,]+)": the leftmost match.
  for (size_t p = text.find("#### "); p != std::string::npos; p = text.find("#### ", p + 1)) {
    const size_t i = p + 5;
    if (i < text.size() && text[i] == '-') {
      const size_t n = RunLength(text, i + 1, InStrictClass);
      if (n > 0) return text.substr(i, n + 1);
      continue;  // without the '-' the class cannot start at '-'
    }
    const size_t n = RunLength(text, i, InStrictClass);
    if (n > 0) return text.substr(i, n);
  }
  return kInvalid;
}

std::string Gsm8kFlexibleExtract(const std::string& text) {
  // findall("(-?[$0-9.,]{2,})|(-?[0-9]+)") scanning left to right without
  // overlaps; the last match is kept.
  std::string last;
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 0;
    const bool minus = text[i] == '-';
    const size_t body = minus ? i + 1 : i;
    if (const size_t run = RunLength(text, body, InFlexibleClass); run >= 2) {
      len = (body - i) + run;  // first alternative
    } else if (const size_t digits = RunLength(text, body, [](char c) { return IsDigit(c); });
               digits >= 1) {
      len = (body - i) + digits;  // second alternative
    }
    if (len == 0) {
      ++i;
      continue;
    }
    last = text.substr(i, len);
    i += len;
  }
  return last.empty() ? kInvalid : last;
}

std::string Gsm8kNormalize(const std::string& text) {
  std::string s = EraseChar(EraseChar(text, ','), '$');
  if (const size_t f = s.rfind("#### "); f != std::string::npos) s = s.substr(f + 5);
  // "\.$": a '.' at the end, or just before a final newline.
  if (!s.empty() && s.back() == '.') {
    s.pop_back();
  } else if (s.size() >= 2 && s.back() == '\n' && s[s.size() - 2] == '.') {
    s.erase(s.size() - 2, 1);
  }
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

TaskResult RunGsm8k(const Tokenizer& tokenizer, const GenerateFn& generate,
                    const Gsm8kOptions& options, int64_t limit, const fs::path& data_dir) {
  const fs::path dir = data_dir.empty() ? DefaultSharedDir() / "data" : data_dir;
  if (options.max_new_tokens < 1 || options.max_new_tokens >= options.max_length)
    throw ConfigError(fmt::format("gsm8k: {} new tokens leave no room for a prompt in the model's "
                                  "{}-token context",
                                  options.max_new_tokens, options.max_length));
  const std::vector<Gsm8kItem> items = LoadGsm8k(dir);
  if (items.size() <= static_cast<size_t>(kGsm8kShots))
    throw ConfigError(fmt::format("{}: GSM8K needs more than {} items (the first {} are the shots)",
                                  (dir / "gsm8k" / "test.jsonl").string(), kGsm8kShots, kGsm8kShots));
  const size_t max_prompt = static_cast<size_t>(options.max_length - options.max_new_tokens);
  auto should_stop = [&](const std::vector<int64_t>& ids) {
    const std::string text = tokenizer.Decode(ids);
    for (const auto& s : Gsm8kStopSequences())
      if (text.find(s) != std::string::npos) return true;
    return false;
  };
  TaskResult result;
  result.task = "gsm8k";
  double strict = 0, flexible = 0, truncated = 0;
  for (size_t i = static_cast<size_t>(kGsm8kShots); i < items.size(); ++i) {
    if (limit > 0 && result.items >= limit) break;
    std::vector<int64_t> prompt = tokenizer.Encode(Gsm8kPrompt(items, i), options.add_bos);
    if (prompt.size() > max_prompt) {
      prompt.erase(prompt.begin(), prompt.end() - static_cast<std::ptrdiff_t>(max_prompt));
      truncated += 1;
    }
    const std::string text =
        Gsm8kCutAtStops(tokenizer.Decode(generate(prompt, options.max_new_tokens, should_stop)));
    const std::string gold = Gsm8kNormalize(items[i].answer);
    strict += Gsm8kNormalize(Gsm8kStrictExtract(text)) == gold ? 1.0 : 0.0;
    flexible += Gsm8kNormalize(Gsm8kFlexibleExtract(text)) == gold ? 1.0 : 0.0;
    ++result.items;
  }
  const double n = result.items > 0 ? static_cast<double>(result.items) : 1.0;
  result.metrics["strict_match"] = strict / n;
  result.metrics["flexible_extract"] = flexible / n;
  result.sizes["truncated_prompts"] = truncated;
  return result;
}

}  // namespace lifeline::recovery
