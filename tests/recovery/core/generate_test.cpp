#include "recovery/model/generate.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include <torch/types.h>

#include "common/error.hpp"
#include "recovery/model/llama2c_checkpoint.hpp"
#include "test_util.hpp"
#include "tiny_model.hpp"

namespace lifeline::recovery {
namespace {

// The tests' tiny Llama with 24 positions (the limit the stop test reaches),
// weights N(0, 0.7) so that greedy decoding does not repeat one token.
Decoder TinyDecoder() {
  ModelArch a = test::TinyArch();
  a.max_position_embeddings = 24;
  at::manual_seed(5);
  Decoder model(a, true);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.7);
  return model;
}

// Greedy decoding without a cache: the whole sequence through forward() for
// every new token.
std::vector<int64_t> NaiveGreedy(Decoder& model, std::vector<int64_t> ids, int64_t n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor x = at::tensor(ids, at::kLong).view({1, static_cast<int64_t>(ids.size())});
    const int64_t next = model->forward(x).select(1, -1).argmax(-1).item<int64_t>();
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

TEST(Generate, KvCacheGreedyEqualsTheFullRecompute) {
  Decoder model = TinyDecoder();
  const std::vector<int64_t> prompt = {3, 17, 9, 25};
  const auto cached = GreedyGenerate(model, prompt, 12, /*eos_id=*/-1);
  EXPECT_EQ(cached, NaiveGreedy(model, prompt, 12));
  EXPECT_EQ(cached.size(), 12u);
}

TEST(Generate, StopsAtEosAtTheStopTestAndAtTheLastPosition) {
  Decoder model = TinyDecoder();
  const std::vector<int64_t> prompt = {3, 17, 9, 25};
  const auto free = NaiveGreedy(model, prompt, 12);
  // EOS = the 4th generated token: generation stops there and keeps it.
  const auto to_eos = GreedyGenerate(model, prompt, 12, free[3]);
  const auto first = std::find(free.begin(), free.end(), free[3]);
  EXPECT_EQ(to_eos, std::vector<int64_t>(free.begin(), first + 1));
  // The stop test sees the new ids after each token.
  std::vector<size_t> seen;
  const auto stopped = GreedyGenerate(model, prompt, 12, -1, [&](const std::vector<int64_t>& ids) {
    seen.push_back(ids.size());
    return ids.size() == 5;
  });
  EXPECT_EQ(stopped, std::vector<int64_t>(free.begin(), free.begin() + 5));
  EXPECT_EQ(seen, (std::vector<size_t>{1, 2, 3, 4, 5}));
  // 24 positions: a 20-token prompt leaves room for 4 new tokens.
  EXPECT_EQ(GreedyGenerate(model, std::vector<int64_t>(20, 7), 12, -1).size(), 4u);
  EXPECT_THROW(GreedyGenerate(model, std::vector<int64_t>(25, 7), 1, -1), ConfigError);
}

TEST(Generate, Stories260kCachedEqualsRecompute) {
  LIFELINE_REQUIRE_STORIES260K();
  Decoder model = BuildDecoder(LoadLlama2cCheckpoint(Stories260kModelPath()));
  const auto ids = GreedyGenerate(model, {1}, 40, 2);
  const auto naive = NaiveGreedy(model, {1}, static_cast<int64_t>(ids.size()));
  EXPECT_EQ(ids, naive);
}

}  // namespace
}  // namespace lifeline::recovery
