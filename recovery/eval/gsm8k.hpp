#pragma once
// GSM8K as lm-evaluation-harness's `gsm8k` task (version 3) runs it:
//
//   prompt   5 worked examples "Question: {question}\nAnswer: {answer}", each
//            followed by "\n\n", then "Question: {question}\nAnswer:"
//   decoding greedy, until "Question:", "</s>" or "<|im_end|>" (or EOS, or
//            max_new_tokens); the generation is cut at the first stop string
//   filters  strict-match: first "#### (-?[0-9.,]+)" of the generation;
//            flexible-extract: last match of "(-?[$0-9.,]{2,})|(-?[0-9]+)"
//   metric   exact match after removing ",", "$", everything up to the last
//            "#### " and a trailing ".", case-insensitive, against the gold
//            answer normalised the same way
//
// The shipped data has no train split (the harness samples its shots from
// it): the shots are test items 1-5 (fixed, the same for every question) and
// scoring starts at item 6, so they are never scored.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "recovery/eval/lm_eval_tasks.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {

// Greedy continuation of `prompt` (ids): returns at most `max_new_tokens` new
// ids. It may stop early at EOS or as soon as `should_stop(new_ids_so_far)`
// returns true (checked after each new token).
using GenerateFn = std::function<std::vector<int64_t>(
    const std::vector<int64_t>& prompt, int64_t max_new_tokens,
    const std::function<bool(const std::vector<int64_t>&)>& should_stop)>;

struct Gsm8kItem {
  std::string question;  // problem text
  std::string answer;    // worked solution ending in "#### <number>"
};

inline constexpr int64_t kGsm8kShots = 5;  // few-shot examples per prompt

// gsm8k/test.jsonl (1,319 items), in file order. ConfigError naming the file
// and line on a missing file or a line without "question"/"answer".
std::vector<Gsm8kItem> LoadGsm8k(const std::filesystem::path& data_dir);

// The request for item `index` (>= kGsm8kShots) of `items`: the shots
// (items 0..4) then the question.
std::string Gsm8kPrompt(const std::vector<Gsm8kItem>& items, size_t index);

// The generation's stop strings, in the harness's order.
const std::vector<std::string>& Gsm8kStopSequences();
// `text` up to the first occurrence of each stop string in turn (the
// harness's `text.split(stop)[0]` for every stop).
std::string Gsm8kCutAtStops(const std::string& text);

// The strict-match filter: the first "#### (-?[0-9.,]+)" capture, or
// "[invalid]" when there is none (the harness's fallback).
std::string Gsm8kStrictExtract(const std::string& text);
// The flexible-extract filter: the last match of
// "(-?[$0-9.,]{2,})|(-?[0-9]+)" (its non-empty group), or "[invalid]".
std::string Gsm8kFlexibleExtract(const std::string& text);
// exact_match's normalisation: remove ",", "$", then everything up to and
// including the last "#### ", then one trailing "."; lower-case.
std::string Gsm8kNormalize(const std::string& text);

struct Gsm8kOptions {
  int64_t max_new_tokens = 256;  // the harness's max_gen_toks
  // Model context. A prompt longer than max_length - max_new_tokens keeps
  // its last tokens (the harness's left truncation); counted in
  // sizes["truncated_prompts"].
  int64_t max_length = 2048;
  bool add_bos = true;  // start the prompt with BOS (llama2.c models; the harness adds none for HF models)
};

// Scores items kGsm8kShots.. (at most `limit` > 0 of them). metrics:
// "strict_match" and "flexible_extract" (exact-match rates in [0, 1]);
// sizes: "truncated_prompts" (items whose prompt was cut to fit). `data_dir` empty =
// DefaultSharedDir() / "data". ConfigError when max_new_tokens does not
// leave room for a prompt in max_length.
TaskResult RunGsm8k(const Tokenizer& tokenizer, const GenerateFn& generate,
                    const Gsm8kOptions& options, int64_t limit = 0,
                    const std::filesystem::path& data_dir = {});

}  // namespace lifeline::recovery
