#include "recovery/eval/lm_eval_tasks.hpp"

#include <bzlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "recovery/eval/jsonl.hpp"
#include "recovery/eval/text_metrics.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open data file", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Decompresses a .bz2 file; with max_lines > 0 stops once that many lines are in.
std::string ReadBz2(const fs::path& path, size_t max_lines = 0) {
  FILE* f = std::fopen(path.string().c_str(), "rb");
  if (!f) throw ConfigError(fmt::format("{}: cannot open data file", path.string()));
  int err = BZ_OK;
  BZFILE* bz = BZ2_bzReadOpen(&err, f, 0, 0, nullptr, 0);
  std::string out;
  char buf[1 << 16];
  size_t lines = 0;
  bool stopped_early = false;
  while (err == BZ_OK) {
    const int n = BZ2_bzRead(&err, bz, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    if (max_lines > 0 && n > 0) {
      lines += static_cast<size_t>(std::count(buf, buf + n, '\n'));
      if (lines >= max_lines && err == BZ_OK) {
        stopped_early = true;
        break;
      }
    }
  }
  const int final_err = stopped_early ? BZ_STREAM_END : err;
  BZ2_bzReadClose(&err, bz);
  std::fclose(f);
  if (final_err != BZ_STREAM_END)
    throw ConfigError(fmt::format("{}: bz2 decompression failed (bzlib error {})", path.string(),
                                  final_err));
  return out;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::string line;
  std::istringstream in(text);
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> StringArray(const json& j, const fs::path& path, int64_t line,
                                     const char* key) {
  if (!j.contains(key) || !j[key].is_array())
    throw ConfigError(fmt::format("{}:{}: key '{}': missing or not an array", path.string(), line, key));
  return j[key].get<std::vector<std::string>>();
}

int64_t Gold(const json& j, const fs::path& path, int64_t line, const char* key, size_t n) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw ConfigError(fmt::format("{}:{}: key '{}': missing or not an integer", path.string(), line, key));
  const int64_t g = j[key].get<int64_t>();
  if (g < 0 || static_cast<size_t>(g) >= n)
    throw ConfigError(fmt::format("{}:{}: key '{}': {} is not a valid choice index (0..{})",
                                  path.string(), line, key, g, n - 1));
  return g;
}

std::string Key(const json& j, const fs::path& path, int64_t line, const char* key) {
  return JsonLineString(j, path, line, key);
}

std::string Strip(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string ReplaceAll(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string Lettered(const std::vector<std::string>& options) {
  std::string s;
  for (size_t i = 0; i < options.size(); ++i)
    s += fmt::format("\n{}. {}", static_cast<char>('A' + i), options[i]);
  return s;
}

// lm-evaluation-harness truthfulqa_mc1/mc2 fixed 6-shot QA primer.
constexpr const char* kTruthfulQaPrimer =
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain.";

std::vector<TaskItem> LoadHellaswag(const fs::path& dir, int64_t limit) {
  const fs::path path = dir / "hellaswag" / "hellaswag_val_full.txt.bz2";
  const size_t max_lines = limit > 0 ? static_cast<size_t>(limit) * 6 : 0;
  std::vector<std::string> lines = SplitLines(ReadBz2(path, max_lines));
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (max_lines > 0 && lines.size() > max_lines) lines.resize(max_lines);
  if (lines.size() % 6 != 0)
    throw ConfigError(fmt::format("{}: {} lines, not a multiple of 6 (context, gold, 4 endings)",
                                  path.string(), lines.size()));
  std::vector<TaskItem> items;
  for (size_t i = 0; i + 6 <= lines.size(); i += 6) {
    if (limit > 0 && static_cast<int64_t>(items.size()) >= limit) break;
    TaskItem item;
    item.contexts = {CleanHellaswagText(lines[i])};
    const std::string& g = lines[i + 1];
    if (g.size() != 1 || g[0] < '0' || g[0] > '3')
      throw ConfigError(fmt::format("{}:{}: gold label '{}' is not 0..3", path.string(), i + 2, g));
    item.gold = g[0] - '0';
    for (size_t k = 0; k < 4; ++k) item.choices.push_back(CleanHellaswagText(lines[i + 2 + k]));
    items.push_back(std::move(item));
  }
  return items;
}

// Generic {query, choices, gold} jsonl (llm-foundry format); `make_context` maps the query.
template <typename F>
std::vector<TaskItem> LoadQueryChoices(const fs::path& path, int64_t limit, F make_context) {
  std::vector<TaskItem> items;
  ForEachJsonLine(path, limit, [&](const json& j, int64_t line) {
    TaskItem item;
    item.choices = StringArray(j, path, line, "choices");
    item.gold = Gold(j, path, line, "gold", item.choices.size());
    item.contexts = {make_context(Key(j, path, line, "query"), line)};
    items.push_back(std::move(item));
  });
  return items;
}

std::vector<TaskItem> LoadMmlu(const fs::path& dir, int64_t limit) {
  const fs::path test_dir = dir / "mmlu" / "test";
  const fs::path dev_dir = dir / "mmlu" / "dev";
  std::error_code ec;
  if (!fs::is_directory(test_dir, ec))
    throw ConfigError(fmt::format("{}: MMLU test directory not found", test_dir.string()));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(test_dir))
    if (e.path().extension() == ".csv") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw ConfigError(fmt::format("{}: no *_test.csv files", test_dir.string()));

  struct Question {
    std::string text;
    std::vector<std::string> options;
    int64_t answer;
  };
  auto read = [](const fs::path& path) {
    std::vector<Question> qs;
    auto rows = ParseCsv(ReadText(path));
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto& row = rows[r];
      if (r == 0 && !row.empty() && row[0] == "question") continue;  // header
      if (row.size() == 1 && row[0].empty()) continue;
      if (row.size() != 6)
        throw ConfigError(fmt::format("{}: row {}: {} fields; expected question, choice0..3, "
                                      "answer",
                                      path.string(), r + 1, row.size()));
      Question q{Strip(row[0]), {row[1], row[2], row[3], row[4]}, -1};
      const std::string a = Strip(row[5]);
      if (a.size() == 1 && a[0] >= '0' && a[0] <= '3') q.answer = a[0] - '0';
      if (a.size() == 1 && a[0] >= 'A' && a[0] <= 'D') q.answer = a[0] - 'A';
      if (q.answer < 0)
        throw ConfigError(fmt::format("{}: row {}: answer '{}' is not 0..3 or A..D", path.string(),
                                      r + 1, a));
      qs.push_back(std::move(q));
    }
    return qs;
  };
  auto render = [](const Question& q) { return q.text + Lettered(q.options) + "\nAnswer:"; };

  std::vector<TaskItem> items;
  for (const fs::path& test : files) {
    std::string subject = test.stem().string();
    if (subject.size() > 5 && subject.ends_with("_test")) subject.resize(subject.size() - 5);
    const fs::path dev = dev_dir / (subject + "_dev.csv");
    std::vector<Question> shots = read(dev);
    if (shots.size() > 5) shots.resize(5);
    std::string prefix = fmt::format(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        ReplaceAll(subject, "_", " "));
    for (const Question& s : shots)
      prefix += render(s) + " " + static_cast<char>('A' + s.answer) + "\n\n";
    std::vector<Question> qs = read(test);
    if (limit > 0 && static_cast<int64_t>(qs.size()) > limit) qs.resize(static_cast<size_t>(limit));
    for (const Question& q : qs) {
      TaskItem item;
      item.contexts = {prefix + render(q)};
      item.choices = {"A", "B", "C", "D"};
      item.gold = q.answer;
      items.push_back(std::move(item));
    }
  }
  return items;
}

std::vector<TaskItem> LoadTruthfulQa(const fs::path& dir, int64_t limit, bool mc2) {
  const fs::path path = dir / "truthfulqa" / "mc_task.json";
  ordered_json j;  // keeps the answers in file order (gold first)
  try {
    j = ordered_json::parse(ReadText(path));
  } catch (const ordered_json::exception& e) {
    throw ConfigError(fmt::format("{}: not valid JSON ({})", path.string(), e.what()));
  }
  if (!j.is_array()) throw ConfigError(fmt::format("{}: expected a JSON array of items", path.string()));
  std::vector<TaskItem> items;
  const char* key = mc2 ? "mc2_targets" : "mc1_targets";
  for (size_t i = 0; i < j.size(); ++i) {
    if (limit > 0 && static_cast<int64_t>(items.size()) >= limit) break;
    const auto& d = j[i];
    if (!d.is_object() || !d.contains("question") || !d.contains(key) || !d[key].is_object())
      throw ConfigError(fmt::format("{}: item {}: needs 'question' and '{}'", path.string(), i, key));
    TaskItem item;
    item.contexts = {std::string(kTruthfulQaPrimer) + "\n\nQ: " + d["question"].get<std::string>() +
                     "\nA:"};
    item.gold = -1;
    for (auto it = d[key].begin(); it != d[key].end(); ++it) {
      const int label = it.value().get<int>();
      if (label == 1 && item.gold < 0) item.gold = static_cast<int64_t>(item.choices.size());
      item.choices.push_back(it.key());
      item.labels.push_back(label);
    }
    if (item.gold < 0 || item.choices.size() < 2)
      throw ConfigError(fmt::format("{}: item {}: '{}' needs a true answer and at least 2 answers",
                                    path.string(), i, key));
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
      continue;
    }
    any = true;
    if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      rows.push_back(std::move(row));
      row.clear();
      any = false;
    } else {
      field.push_back(c);
    }
  }
  if (any || !field.empty() || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string CleanHellaswagText(const std::string& text) {
  std::string s = ReplaceAll(Strip(text), " [title]", ". ");
  std::string out;  // re.sub("\\[.*?\\]", "", s)
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      const size_t close = s.find(']', i + 1);
      if (close != std::string::npos) {
        i = close;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return ReplaceAll(out, "  ", " ");
}

const std::vector<TaskInfo>& LmEvalTasks() {
  static const std::vector<TaskInfo> tasks = {
      {"hellaswag", TaskKind::kMultipleChoice, true},
      {"piqa", TaskKind::kMultipleChoice, true},
      {"arc_challenge", TaskKind::kMultipleChoice, true},
      {"openbookqa", TaskKind::kMultipleChoice, true},
      {"winogrande", TaskKind::kMultipleChoice, false},
      {"boolq", TaskKind::kMultipleChoice, false},
      {"lambada_openai", TaskKind::kLambada, false},
      {"mmlu", TaskKind::kMultipleChoice, false},
      {"truthfulqa_mc1", TaskKind::kMultipleChoice, false},
      {"truthfulqa_mc2", TaskKind::kMc2, false},
      {"logiqa2", TaskKind::kMultipleChoice, true},
      {"gsm8k", TaskKind::kGenerate, false},
      {"wikitext", TaskKind::kRolling, false},
  };
  return tasks;
}

const TaskInfo& FindLmEvalTask(const std::string& name) {
  std::vector<std::string> names;
  for (const TaskInfo& t : LmEvalTasks()) {
    if (t.name == name) return t;
    names.push_back(t.name);
  }
  throw ConfigError(fmt::format("unknown evaluation task '{}'; expected one of: {}", name,
                                fmt::join(names, ", ")));
}

std::vector<TaskItem> LoadTaskItems(const std::string& task, const fs::path& data_dir,
                                    int64_t limit) {
  const TaskInfo& info = FindLmEvalTask(task);
  if (info.kind == TaskKind::kGenerate || info.kind == TaskKind::kRolling)
    throw InternalError("task '" + task + "' has its own runner (RunGsm8k / RunWikitext)");
  const fs::path& d = data_dir;
  if (task == "hellaswag") return LoadHellaswag(d, limit);
  if (task == "piqa" || task == "arc_challenge") {
    const fs::path path = task == "piqa" ? d / "piqa" / "piqa.jsonl"
                                         : d / "arc_challenge" / "arc_challenge.jsonl";
    // piqa queries are "Question: {goal}\n"; arc queries "Question: {q}".
    return LoadQueryChoices(path, limit, [&](const std::string& q, int64_t) {
      return q.ends_with("\n") ? q + "Answer:" : q + "\nAnswer:";
    });
  }
  if (task == "openbookqa")
    return LoadQueryChoices(d / "openbookqa" / "openbook_qa.jsonl", limit,
                            [](const std::string& q, int64_t) { return q; });
  if (task == "boolq") {
    const fs::path path = d / "boolq" / "boolq.jsonl";
    return LoadQueryChoices(path, limit, [&](const std::string& q, int64_t line) {
      const std::string prefix = "Passage: ";
      if (!q.starts_with(prefix))
        throw ConfigError(fmt::format("{}:{}: key 'query': expected it to start with 'Passage: '",
                                      path.string(), line));
      return q.substr(prefix.size()) + "\nAnswer:";
    });
  }
  if (task == "winogrande") {
    const fs::path path = d / "winogrande" / "winogrande.jsonl";
    std::vector<TaskItem> items;
    ForEachJsonLine(path, limit, [&](const json& j, int64_t line) {
      TaskItem item;
      item.contexts = StringArray(j, path, line, "context_options");
      const std::string cont = Key(j, path, line, "continuation");
      item.choices.assign(item.contexts.size(), cont);
      item.gold = Gold(j, path, line, "gold", item.contexts.size());
      items.push_back(std::move(item));
    });
    return items;
  }
  if (task == "lambada_openai") {
    const fs::path path = d / "lambada_openai" / "lambada_openai.jsonl";
    std::vector<TaskItem> items;
    ForEachJsonLine(path, limit, [&](const json& j, int64_t line) {
      TaskItem item;
      item.contexts = {Key(j, path, line, "context")};
      item.choices = {Key(j, path, line, "continuation")};
      items.push_back(std::move(item));
    });
    return items;
  }
  if (task == "mmlu") return LoadMmlu(d, limit);
  if (task == "truthfulqa_mc1") return LoadTruthfulQa(d, limit, false);
  if (task == "truthfulqa_mc2") return LoadTruthfulQa(d, limit, true);
  if (task == "logiqa2") {
    const fs::path path = d / "logiqa2" / "test.txt";
    std::vector<TaskItem> items;
    ForEachJsonLine(path, limit, [&](const json& j, int64_t line) {
      TaskItem item;
      item.choices = StringArray(j, path, line, "options");
      item.gold = Gold(j, path, line, "answer", item.choices.size());
      item.contexts = {"Passage: " + Key(j, path, line, "text") + "\nQuestion: " +
                       Key(j, path, line, "question") + Lettered(item.choices) + "\nAnswer:"};
      items.push_back(std::move(item));
    });
    return items;
  }
  throw InternalError("task '" + task + "' has no loader");
}

TaskResult ScoreTask(const std::string& task, const std::vector<TaskItem>& items,
                     const Tokenizer& tokenizer, const LogitsFn& model,
                     const LoglikelihoodOptions& options) {
  const TaskInfo& info = FindLmEvalTask(task);
  if (info.kind == TaskKind::kGenerate || info.kind == TaskKind::kRolling)
    throw InternalError("task '" + task + "' has its own runner (RunGsm8k / RunWikitext)");
  std::vector<LoglikelihoodRequest> requests;
  for (const TaskItem& item : items) {
    LIFELINE_CHECK(item.contexts.size() == 1 || item.contexts.size() == item.choices.size(),
                   "a task item needs one context or one per choice");
    for (size_t c = 0; c < item.choices.size(); ++c)
      requests.push_back({item.contexts.size() == 1 ? item.contexts[0] : item.contexts[c],
                          item.delimiter + item.choices[c]});
  }
  const std::vector<LoglikelihoodResult> ll =
      ComputeLoglikelihoods(requests, tokenizer, model, options);

  TaskResult result;
  result.task = task;
  result.items = static_cast<int64_t>(items.size());
  double acc = 0, acc_norm = 0, mc2 = 0, logprob_sum = 0;
  size_t k = 0;
  for (const TaskItem& item : items) {
    const size_t n = item.choices.size();
    if (info.kind == TaskKind::kLambada) {
      acc += ll[k].is_greedy ? 1.0 : 0.0;
      logprob_sum += ll[k].logprob;
    } else if (info.kind == TaskKind::kMc2) {
      double p_true = 0, p_all = 0;
      // Shift by the max log-probability for stability; the ratio is unchanged.
      double max_lp = -std::numeric_limits<double>::infinity();
      for (size_t c = 0; c < n; ++c) max_lp = std::max(max_lp, ll[k + c].logprob);
      for (size_t c = 0; c < n; ++c) {
        const double p = std::exp(ll[k + c].logprob - max_lp);
        p_all += p;
        if (item.labels.at(c) == 1) p_true += p;
      }
      mc2 += p_true / p_all;
    } else {
      size_t best = 0, best_norm = 0;
      for (size_t c = 1; c < n; ++c) {
        if (ll[k + c].logprob > ll[k + best].logprob) best = c;
        auto chars = [&](size_t i) {
          return static_cast<double>(std::max<size_t>(1, item.choices[i].size()));
        };
        const double norm_c = ll[k + c].logprob / chars(c);
        const double norm_b = ll[k + best_norm].logprob / chars(best_norm);
        if (norm_c > norm_b) best_norm = c;
      }
      acc += static_cast<int64_t>(best) == item.gold ? 1.0 : 0.0;
      acc_norm += static_cast<int64_t>(best_norm) == item.gold ? 1.0 : 0.0;
    }
    k += n;
  }
  const double count = items.empty() ? 1.0 : static_cast<double>(items.size());
  switch (info.kind) {
    case TaskKind::kLambada:
      result.metrics["acc"] = acc / count;
      result.metrics["ppl"] = std::exp(-logprob_sum / count);
      break;
    case TaskKind::kMc2:
      result.metrics["mc2"] = mc2 / count;
      break;
    case TaskKind::kGenerate:
    case TaskKind::kRolling:
      break;
    case TaskKind::kMultipleChoice:
      result.metrics[task == "truthfulqa_mc1" ? "mc1" : "acc"] = acc / count;
      if (info.acc_norm) result.metrics["acc_norm"] = acc_norm / count;
      break;
  }
  return result;
}

TaskResult RunLmEvalTask(const std::string& task, const Tokenizer& tokenizer,
                         const LogitsFn& model, const LoglikelihoodOptions& options, int64_t limit,
                         const fs::path& data_dir) {
  const fs::path dir = data_dir.empty() ? DefaultSharedDir() / "data" : data_dir;
  return ScoreTask(task, LoadTaskItems(task, dir, limit), tokenizer, model, options);
}

}  // namespace lifeline::recovery
