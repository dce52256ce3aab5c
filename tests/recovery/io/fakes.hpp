#pragma once
// Fake models and tokenizer for evaluator tests: the right answers follow
// from the tables by hand.

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/eval/logits_fn.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery::testing {

// One id per byte; BOS = 0 (NUL never appears in test text), no EOS.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int64_t> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> ids;
    if (add_bos) ids.push_back(0);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string Decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (int64_t id : ids)
      if (id != 0) s.push_back(static_cast<char>(id));
    return s;
  }
  int64_t VocabSize() const override { return 256; }
  int64_t BosId() const override { return 0; }
  int64_t EosId() const override { return -1; }
};

// A bigram model: logits[b, t] = log p(. | ids[b, t]) from a (V, V) table of
// probabilities whose rows sum to 1.
inline LogitsFn BigramModel(const at::Tensor& probs) {
  at::Tensor table = probs.log();
  return [table](const at::Tensor& ids) {
    const auto b = ids.size(0), t = ids.size(1);
    return table.index_select(0, ids.reshape({-1})).reshape({b, t, table.size(1)});  // (B, T, V)
  };
}

// 256-token table used by the harness tests: after any byte, p(' ') = 0.5,
// p('x') = 0.1, p('y') = 0.2, the remaining 0.2 spread over the other 253
// bytes; after 'a', p('b') = 0.9 and 0.1 spread over the other 255.
inline at::Tensor HarnessTable() {
  at::Tensor p = at::full({256, 256}, 0.2 / 253.0, at::kDouble);
  p.select(1, ' ').fill_(0.5);
  p.select(1, 'x').fill_(0.1);
  p.select(1, 'y').fill_(0.2);
  p.select(0, 'a').fill_(0.1 / 255.0);
  p[static_cast<int64_t>('a')][static_cast<int64_t>('b')] = 0.9;
  return p.to(at::kFloat);
}

}  // namespace lifeline::recovery::testing
