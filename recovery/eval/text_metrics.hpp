#pragma once
// Text metrics over documents (e.g. TinyStories): token perplexity of a model
// and, given a teacher, KL(teacher || student) per token and top-1 agreement,
// all from one pass over the documents.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "recovery/eval/logits_fn.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {

// What one pass over the documents measures. Every average is over predicted
// tokens: a document of n ids predicts ids[1..n-1] from their prefixes.
struct TextMetrics {
  int64_t documents = 0;         // documents evaluated (those with >= 2 ids)
  int64_t tokens = 0;            // predicted tokens counted
  double nll_per_token = 0.0;    // mean negative log-likelihood, nats
  double perplexity = 0.0;       // exp(nll_per_token)
  bool has_teacher = false;      // the fields below are set only with a teacher
  double kl_per_token = 0.0;     // mean KL(p_teacher || p_student), nats/token
  double top1_agreement = 0.0;   // fraction of positions where argmaxes agree, in [0, 1]
  double teacher_nll_per_token = 0.0;  // the teacher's own mean NLL, nats
  double teacher_perplexity = 0.0;     // exp(teacher_nll_per_token)
};

// Reads a text file of documents separated by blank lines (lines holding only
// whitespace count as blank). Lines inside a document are joined with "\n";
// leading/trailing whitespace of each document is trimmed. `limit` > 0 keeps
// the first `limit` documents. Throws ConfigError when the file is missing.
std::vector<std::string> LoadStories(const std::filesystem::path& path, int64_t limit = 0);

// Tokenizes each story from BOS (tokenizer.Encode(story, /*add_bos=*/true))
// and truncates it to `max_tokens` ids (BOS included) when max_tokens > 0.
std::vector<std::vector<int64_t>> TokenizeStories(const std::vector<std::string>& stories,
                                                  const Tokenizer& tokenizer,
                                                  int64_t max_tokens);

// One pass over `docs` (each a sequence of ids, typically BOS + story).
// Documents are sorted by length and evaluated `batch` at a time, padded on
// the right (padding never influences earlier positions of a causal model and
// is masked out of every sum). `model` is the student; `teacher` may be
// nullptr, in which case only perplexity is computed. Runs without autograd.
// The id tensor handed to the LogitsFn is int64 on the CPU; logits may come
// back on any device. Documents shorter than 2 ids are skipped.
TextMetrics EvaluateText(const std::vector<std::vector<int64_t>>& docs, const LogitsFn& model,
                         const LogitsFn* teacher, int64_t batch);

// The shared data directory: lifeline::SharedDir() ($LIFELINE_SHARED_DIR, else <repo>/../shared).
std::filesystem::path DefaultSharedDir();

}  // namespace lifeline::recovery
