#pragma once
// WikiText-2 perplexity as lm-evaluation-harness's `wikitext` task runs it
// (dataset EleutherAI/wikitext_document_level, wikitext-2-raw-v1, test split):
//
//   documents  wiki.test.raw split before every top-level heading line
//              (" = Title = "; "= = Section = =" lines are not top-level);
//              62 documents
//   scored     the detokenized document (the harness's wikitext_detokenizer),
//              as a rolling log-likelihood from the prefix token (BOS, or EOS
//              without one): disjoint windows of the model's context, each
//              token predicted once, the first window from the prefix token
//              and each later one with the tokens before it as context
//   metrics    word_perplexity = exp(-sum ll / sum words), byte_perplexity =
//              exp(-sum ll / sum bytes), bits_per_byte = -sum ll / sum bytes
//              / ln 2, where words = len(re.split(r"\s+", document)) and bytes
//              = its UTF-8 length, both of the document *before*
//              detokenization; token_perplexity = exp(-sum ll / tokens)

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "recovery/eval/lm_eval_tasks.hpp"
#include "recovery/eval/loglikelihood.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {

// Splits the raw file into documents exactly as the dataset script does:
// lines split on "\n"; a line is a heading when, after "= = =" -> "===" and
// "= =" -> "==" and stripping, it starts with "= " and ends with " ="; a
// heading closes the lines gathered so far (kept when not all whitespace) and
// starts the next document; the last document is kept as it is.
std::vector<std::string> SplitWikitextDocuments(const std::string& raw);

// wikitext2/wiki.test.raw split into documents, its "\r\n" (and lone "\r")
// read as "\n" as Python's text mode does (the shipped file has CRLF line
// ends; the dataset's has LF); `limit` > 0 keeps the first `limit`. ConfigError naming the file when it is missing.
std::vector<std::string> LoadWikitext(const std::filesystem::path& data_dir, int64_t limit = 0);

// The harness's wikitext_detokenizer (" @-@ " -> "-", " , " -> ", ",
// brackets and quotes tightened, " N " -> " 1 ", ...).
std::string WikitextDetokenize(const std::string& document);

// len(re.split(r"\s+", document)) with Python's Unicode whitespace: a leading
// or trailing run of whitespace counts an empty word.
int64_t WikitextWordCount(const std::string& document);

// lm-eval's get_rolling_token_windows(tokens, prefix, max_length,
// context_len=1) followed by make_disjoint_window: (context ids, continuation
// ids) pairs whose continuations partition `tokens` in order; context +
// continuation minus its last id is at most max_length ids.
std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> RollingWindows(
    const std::vector<int64_t>& tokens, int64_t prefix_id, int64_t max_length);

// Scores `documents` (raw, before detokenization). options.max_length is the
// window; options.batch windows per LogitsFn call; options.add_bos is not
// used (the prefix token starts every document, as in the harness).
// metrics: word_perplexity, byte_perplexity, bits_per_byte,
// token_perplexity; sizes: words, bytes, tokens (scored).
TaskResult ScoreWikitext(const std::vector<std::string>& documents, const Tokenizer& tokenizer,
                         const LogitsFn& model, const LoglikelihoodOptions& options);

// LoadWikitext + ScoreWikitext. `data_dir` empty = DefaultSharedDir() / "data".
TaskResult RunWikitext(const Tokenizer& tokenizer, const LogitsFn& model,
                       const LoglikelihoodOptions& options, int64_t limit = 0,
                       const std::filesystem::path& data_dir = {});

}  // namespace lifeline::recovery
