#pragma once
// lm-evaluation-harness tasks on the data files in <shared>/data, prompted and
// scored as ../shared/reference/EVAL.md describes:
//
//   task             file                                 metrics
//   hellaswag        hellaswag/hellaswag_val_full.txt.bz2  acc, acc_norm
//   piqa             piqa/piqa.jsonl                      acc, acc_norm
//   arc_challenge    arc_challenge/arc_challenge.jsonl    acc, acc_norm
//   openbookqa       openbookqa/openbook_qa.jsonl         acc, acc_norm
//   winogrande       winogrande/winogrande.jsonl          acc (partial scoring)
//   boolq            boolq/boolq.jsonl                    acc
//   lambada_openai   lambada_openai/lambada_openai.jsonl  acc, ppl
//   mmlu             mmlu/test/*.csv (+ 5-shot from dev)  acc (micro average)
//   truthfulqa_mc1   truthfulqa/mc_task.json              mc1
//   truthfulqa_mc2   truthfulqa/mc_task.json              mc2
//   logiqa2          logiqa2/test.txt                     acc, acc_norm
//   gsm8k            gsm8k/test.jsonl                     strict_match, flexible_extract (gsm8k.hpp)
//   wikitext         wikitext2/wiki.test.raw              word/byte perplexity (wikitext.hpp)
//
// HellaSwag note: the shipped text file holds `activity_label: ctx` already
// joined (ctx_b not capitalized, as in the dataset's `ctx` field); the
// harness's cleaning (strip, " [title]" -> ". ", drop [...], "  " -> " ") is
// applied to it and to each ending.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "recovery/eval/logits_fn.hpp"
#include "recovery/eval/loglikelihood.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {

// One benchmark item, ready to score. Choice i is scored as
// log P(delimiter + choices[i] | contexts.size() == 1 ? contexts[0] : contexts[i]).
struct TaskItem {
  std::vector<std::string> contexts;  // one shared context, or one per choice (WinoGrande)
  std::vector<std::string> choices;   // continuation texts without the delimiter
  std::string delimiter = " ";        // put before each choice
  int64_t gold = 0;                   // index of the right choice
  std::vector<int> labels;            // truthfulqa_mc2: 1 = true answer, 0 = false
};

// Which scoring rule a task uses.
enum class TaskKind {
  kMultipleChoice,  // acc (+ acc_norm when the task reports it)
  kLambada,         // single continuation: acc = greedy, ppl = exp(-mean logprob)
  kMc2,             // normalized probability mass on the true answers
  kGenerate,        // greedy generation (gsm8k: RunGsm8k in gsm8k.hpp)
  kRolling,         // rolling log-likelihood of documents (wikitext: RunWikitext in wikitext.hpp)
};

struct TaskInfo {
  std::string name;      // e.g. "piqa"
  TaskKind kind;         // scoring rule
  bool acc_norm;         // report acc_norm (length-normalized by characters)
};

// Every task this module knows, in a fixed order.
const std::vector<TaskInfo>& LmEvalTasks();
// Throws ConfigError listing the known tasks when `name` is unknown.
const TaskInfo& FindLmEvalTask(const std::string& name);

// Reads a multiple-choice or lambada task's items from `data_dir` (the shared `data/` folder). `limit` >
// 0 keeps the first `limit` items (for mmlu: per subject, as the harness's
// --limit does). Throws ConfigError naming the file on a missing or malformed
// file.
std::vector<TaskItem> LoadTaskItems(const std::string& task, const std::filesystem::path& data_dir,
                                    int64_t limit = 0);

struct TaskResult {
  std::string task;                       // task name
  int64_t items = 0;                      // items scored
  std::map<std::string, double> metrics;  // "acc", "acc_norm", "ppl", "mc1", "mc2", ...
  // What was scored, beside the metrics (the same for every model): e.g.
  // wikitext's "words", "bytes", "tokens"; gsm8k's "truncated_prompts".
  std::map<std::string, double> sizes;
};

// Scores `items` with `model`: one LoglikelihoodRequest per choice, batched.
TaskResult ScoreTask(const std::string& task, const std::vector<TaskItem>& items,
                     const Tokenizer& tokenizer, const LogitsFn& model,
                     const LoglikelihoodOptions& options);

// LoadTaskItems + ScoreTask. `data_dir` empty = DefaultSharedDir() / "data".
TaskResult RunLmEvalTask(const std::string& task, const Tokenizer& tokenizer,
                         const LogitsFn& model, const LoglikelihoodOptions& options,
                         int64_t limit = 0, const std::filesystem::path& data_dir = {});

// Parses CSV text (RFC 4180: quoted fields, doubled quotes, newlines inside
// quotes) into rows of fields. Exposed for tests.
std::vector<std::vector<std::string>> ParseCsv(const std::string& text);

// The harness's HellaSwag text cleaning. Exposed for tests.
std::string CleanHellaswagText(const std::string& text);

}  // namespace lifeline::recovery
