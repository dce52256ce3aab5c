#include "recovery/model/generate.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"

namespace lifeline::recovery {

std::vector<int64_t> GreedyGenerate(Decoder& model, const std::vector<int64_t>& prompt,
                                    int64_t max_new_tokens, int64_t eos_id,
                                    const std::function<bool(const std::vector<int64_t>&)>& should_stop) {
  LIFELINE_CHECK(!prompt.empty(), "generation needs at least one prompt token");
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t positions = model->arch().max_position_embeddings;
  if (n_prompt > positions)
    throw ConfigError(fmt::format("{}: a prompt of {} tokens exceeds the model's {} positions",
                                  model->arch().name, n_prompt, positions));
  const int64_t budget = std::min(max_new_tokens, positions - n_prompt);
  std::vector<int64_t> out;
  if (budget <= 0) return out;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  KvCache cache = model->NewCache(1, n_prompt + budget);
  at::Tensor input = at::tensor(prompt, at::kLong).view({1, n_prompt}).to(model->device());
  while (static_cast<int64_t>(out.size()) < budget) {
    const at::Tensor logits = model->Forward(input, &cache).select(1, -1);  // (1, V)
    const int64_t next = logits.argmax(-1).item<int64_t>();
    out.push_back(next);
    if (next == eos_id || (should_stop && should_stop(out))) break;
    input = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(model->device()));
  }
  if (was_training) model->train();
  return out;
}

GenerateFn MakeGenerateFn(Decoder& model, int64_t eos_id) {
  return [&model, eos_id](const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                          const std::function<bool(const std::vector<int64_t>&)>& should_stop) {
    return GreedyGenerate(model, prompt, max_new_tokens, eos_id, should_stop);
  };
}

}  // namespace lifeline::recovery
