#pragma once
// Greedy decoding of one sequence through the decoder's KV cache: the prompt
// is run once (prefill), then one position per new token.

#include <cstdint>
#include <functional>
#include <vector>

#include "recovery/eval/gsm8k.hpp"
#include "recovery/model/decoder.hpp"

namespace lifeline::recovery {

// Appends greedy tokens to `prompt` (non-empty ids) and returns the new ones:
// at most `max_new_tokens`, fewer when the model's positions run out, when
// the token `eos_id` (>= 0) is produced (it is kept), or when
// `should_stop(new ids so far)` returns true. Runs without autograd on the
// model's device; the model is put in eval mode for the call.
std::vector<int64_t> GreedyGenerate(Decoder& model, const std::vector<int64_t>& prompt,
                                    int64_t max_new_tokens, int64_t eos_id,
                                    const std::function<bool(const std::vector<int64_t>&)>& should_stop = {});

// GreedyGenerate bound to `model` and `eos_id`, as the evaluators take it.
GenerateFn MakeGenerateFn(Decoder& model, int64_t eos_id);

}  // namespace lifeline::recovery
