#pragma once
// The lm-evaluation-harness primitive: log P(continuation | context) under a
// model, and whether the continuation is the greedy (argmax) continuation.

#include <cstdint>
#include <string>
#include <vector>

#include "recovery/eval/logits_fn.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {

struct LoglikelihoodRequest {
  std::string context;       // conditioning text (may be empty: starts from BOS)
  std::string continuation;  // scored text, delimiter included (e.g. " yes")
};

struct LoglikelihoodResult {
  double logprob = 0.0;    // sum of log-probabilities of the continuation tokens, nats
  bool is_greedy = false;  // every continuation token is the argmax at its position
  int64_t tokens = 0;      // continuation tokens scored
};

struct LoglikelihoodOptions {
  int64_t batch = 8;          // sequences per LogitsFn call
  int64_t max_length = 2048;  // model context; longer inputs keep their last tokens
  // Prepend BOS to every context (when the tokenizer has one). Keep it for
  // llama2.c models (trained from BOS); set false to match
  // lm-evaluation-harness on Hugging Face causal LMs, which adds no BOS.
  bool add_bos = true;
};

// Splits like the harness: trailing spaces of the context move to the front
// of the continuation; context and context + continuation are tokenized
// separately and the continuation's tokens are those of the whole past the
// context's token count (at least one token: when the whole tokenizes no
// longer than the context, its last token is scored after the
// rest). An empty context is
// BOS alone (EOS when the tokenizer has no BOS). Returns (context ids,
// continuation ids).
std::pair<std::vector<int64_t>, std::vector<int64_t>> TokenizeRequest(
    const LoglikelihoodRequest& request, const Tokenizer& tokenizer, bool add_bos);

// Scores every request; results in request order. Requests whose model
// input is identical share one forward pass; inputs are sorted by length and
// batched, padded on the right. Runs without autograd.
std::vector<LoglikelihoodResult> ComputeLoglikelihoods(
    const std::vector<LoglikelihoodRequest>& requests, const Tokenizer& tokenizer,
    const LogitsFn& model, const LoglikelihoodOptions& options);

// Same on pre-tokenized (context ids, continuation ids) pairs.
std::vector<LoglikelihoodResult> ComputeLoglikelihoodsFromIds(
    const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& requests,
    const LogitsFn& model, const LoglikelihoodOptions& options);

}  // namespace lifeline::recovery
