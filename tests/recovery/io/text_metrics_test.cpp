#include "recovery/eval/text_metrics.hpp"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "recovery/eval/accuracy_recovery.hpp"
#include "recovery/eval/loglikelihood.hpp"
#include "common/error.hpp"
#include "tests/recovery/io/fakes.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

using testing::BigramModel;
using testing::TempDir;
using testing::WriteFile;

// Student and teacher bigram tables over 4 tokens (rows: current token).
const double kStudent[4][4] = {{0.1, 0.6, 0.2, 0.1},
                               {0.25, 0.25, 0.25, 0.25},
                               {0.5, 0.3, 0.1, 0.1},
                               {0.1, 0.1, 0.1, 0.7}};
const double kTeacher[4][4] = {{0.1, 0.7, 0.1, 0.1},
                               {0.4, 0.2, 0.2, 0.2},
                               {0.2, 0.6, 0.1, 0.1},
                               {0.1, 0.1, 0.1, 0.7}};

at::Tensor Table(const double (&t)[4][4]) {
  at::Tensor p = at::empty({4, 4}, at::kDouble);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) p[i][j] = t[i][j];
  return p.to(at::kFloat);
}

TEST(LoadStories, TinyStoriesFirst200WithTok512) {
  const auto text = DefaultSharedDir() / "data" / "tinystories" / "tinystories_val_dev.txt";
  const auto tok_path = DefaultSharedDir() / "models" / "stories260k" / "tok512.bin";
  LIFELINE_REQUIRE_SHARED(text);
  LIFELINE_REQUIRE_SHARED(tok_path);
  const auto stories = LoadStories(text, 200);
  ASSERT_EQ(stories.size(), 200u);
  auto tok = LoadTokenizer(tok_path);
  const auto docs = TokenizeStories(stories, *tok, 512);
  int64_t tokens = 0, longest = 0;
  for (const auto& d : docs) {
    ASSERT_EQ(d.front(), 1);
    ASSERT_LE(d.size(), 512u);
    tokens += static_cast<int64_t>(d.size());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(d.size()));
  }
  std::cout << "[ info ] first 200 TinyStories: " << tokens << " ids incl. BOS, " << tokens - 200
            << " predicted tokens, longest " << longest << "\n";
  EXPECT_EQ(tok->Decode(docs[0]), stories[0].substr(0, tok->Decode(docs[0]).size()));
}

TEST(EvaluateText, BigramPerplexityKlAndTop1ByHand) {
  // Doc A predicts 1|0, 2|1, 1|2; doc B predicts 3|3; doc C is too short.
  const std::vector<std::vector<int64_t>> docs = {{0, 1, 2, 1}, {3, 3}, {2}};
  const LogitsFn student = BigramModel(Table(kStudent));
  const LogitsFn teacher = BigramModel(Table(kTeacher));
  // Hand values: NLL from the student's table entries.
  const double nll = -(std::log(0.6) + std::log(0.25) + std::log(0.3) + std::log(0.7)) / 4;
  const double teacher_nll = -(std::log(0.7) + std::log(0.2) + std::log(0.6) + std::log(0.7)) / 4;
  // KL(teacher || student) per predicting row (0, 1, 2, 3).
  double kl = 0;
  for (int row : {0, 1, 2, 3})
    for (int v = 0; v < 4; ++v) kl += kTeacher[row][v] * std::log(kTeacher[row][v] / kStudent[row][v]);
  kl /= 4;
  // Argmaxes: row 0: 1 vs 1 (agree), row 1: 0 vs 0 (student ties -> first), row 2: 1 vs 0, row 3: 3 vs 3.
  const double top1 = 3.0 / 4.0;
  for (int64_t batch : {1, 2, 3}) {
    const TextMetrics m = EvaluateText(docs, student, &teacher, batch);
    EXPECT_EQ(m.documents, 2);
    EXPECT_EQ(m.tokens, 4);
    EXPECT_NEAR(m.nll_per_token, nll, 1e-6) << "batch " << batch;
    EXPECT_NEAR(m.perplexity, std::exp(nll), 1e-5);
    EXPECT_TRUE(m.has_teacher);
    EXPECT_NEAR(m.kl_per_token, kl, 1e-6);
    EXPECT_NEAR(m.top1_agreement, top1, 1e-9);
    EXPECT_NEAR(m.teacher_perplexity, std::exp(teacher_nll), 1e-5);
  }
  const TextMetrics alone = EvaluateText(docs, student, nullptr, 2);
  EXPECT_FALSE(alone.has_teacher);
  EXPECT_NEAR(alone.nll_per_token, nll, 1e-6);
  // NaN logits at padded positions (ids 0 after a doc's end here) stay out.
const LogitsFn nan_at_padding = [&](const at::Tensor& ids) {
  at::Tensor logits = student(ids).clone();
  for (int64_t r = 0; r < ids.size(0); ++r)  // doc B {3, 3}: positions 1.. only predict padding
    if (ids[r][0].item<int64_t>() == 3 && ids.size(1) > 2) logits[r].slice(0, 1).fill_(NAN);
  return logits;
};
EXPECT_NEAR(EvaluateText(docs, nan_at_padding, nullptr, 2).nll_per_token, nll, 1e-6);
// A model compared with itself: KL 0, full agreement.
  const TextMetrics self = EvaluateText(docs, teacher, &teacher, 2);
  EXPECT_NEAR(self.kl_per_token, 0.0, 1e-7);
  EXPECT_DOUBLE_EQ(self.top1_agreement, 1.0);
}

TEST(LoadStories, SplitsOnBlankLinesAndLimits) {
  TempDir dir;
  WriteFile(dir.path() / "s.txt", "\n\nOne day.\nThe end.\n\n  \t\nTwo.\r\n\n\n\nThree.");
  const auto all = LoadStories(dir.path() / "s.txt");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0], "One day.\nThe end.");
  EXPECT_EQ(all[1], "Two.");
  EXPECT_EQ(all[2], "Three.");
  EXPECT_EQ(LoadStories(dir.path() / "s.txt", 2).size(), 2u);
  EXPECT_THROW(LoadStories(dir.path() / "none.txt"), ConfigError);
  testing::ByteTokenizer tok;
  const auto docs = TokenizeStories(all, tok, 3);
  EXPECT_EQ(docs[0], (std::vector<int64_t>{0, 'O', 'n'}));
  EXPECT_EQ(docs[1], (std::vector<int64_t>{0, 'T', 'w'}));
}

TEST(AccuracyRecovery, DirectionAwareAndUndefined) {
  // Perplexity: lower is better. Teacher 4.22, INT2 22.05, recovered 4.64.
  auto ppl = ComputeAccuracyRecovery(4.22, 22.05, 4.64, DirectionOfMetric("perplexity"));
  ASSERT_TRUE(ppl.ar_pct.has_value()) << ppl.reason;
  EXPECT_NEAR(*ppl.ar_pct, (22.05 - 4.64) / (22.05 - 4.22) * 100, 1e-9);
  // Accuracy: higher is better; half the gap closed.
  auto acc = ComputeAccuracyRecovery(0.80, 0.50, 0.65, DirectionOfMetric("acc_norm"));
  EXPECT_NEAR(*acc.ar_pct, 50.0, 1e-9);
  // KL: teacher 0, quantized 1.68, recovered 0.2.
  auto kl = ComputeAccuracyRecovery(0.0, 1.68, 0.2, DirectionOfMetric("kl_per_token"));
  EXPECT_NEAR(*kl.ar_pct, (1.68 - 0.2) / 1.68 * 100, 1e-9);
  // Recovered worse than quantized: negative.
  EXPECT_LT(*ComputeAccuracyRecovery(0.8, 0.5, 0.4, MetricDirection::kHigherIsBetter).ar_pct, 0);
  // Quantized not worse than the teacher: undefined, with a reason.
  auto same = ComputeAccuracyRecovery(0.7, 0.7, 0.72, MetricDirection::kHigherIsBetter);
  EXPECT_FALSE(same.ar_pct.has_value());
  EXPECT_NE(same.reason.find("not worse"), std::string::npos);
  EXPECT_FALSE(ComputeAccuracyRecovery(4.2, 4.0, 4.1, MetricDirection::kLowerIsBetter).ar_pct);
  EXPECT_FALSE(ComputeAccuracyRecovery(4.2, NAN, 4.1, MetricDirection::kLowerIsBetter).ar_pct);
  EXPECT_EQ(DirectionOfMetric("ppl"), MetricDirection::kLowerIsBetter);
  EXPECT_EQ(DirectionOfMetric("top1_agreement"), MetricDirection::kHigherIsBetter);
  EXPECT_EQ(DirectionOfMetric("mc2"), MetricDirection::kHigherIsBetter);
}

TEST(Loglikelihood, SplitsLikeTheHarnessAndAlignsPositions) {
  testing::ByteTokenizer tok;
  const auto [ctx, cont] = TokenizeRequest({"ab  ", "c"}, tok, true);
  EXPECT_EQ(ctx, (std::vector<int64_t>{0, 'a', 'b'}));
  EXPECT_EQ(cont, (std::vector<int64_t>{' ', ' ', 'c'}));
  const auto [ectx, econt] = TokenizeRequest({"", "xy"}, tok, true);
  EXPECT_EQ(ectx, std::vector<int64_t>{0});
  EXPECT_EQ(econt, (std::vector<int64_t>{'x', 'y'}));

  const LogitsFn model = BigramModel(testing::HarnessTable());
  LoglikelihoodOptions opt;
  opt.batch = 2;
  const auto r = ComputeLoglikelihoods({{"za", "b"}, {"q", " x"}, {"a", "bb"}}, tok, model, opt);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_NEAR(r[0].logprob, std::log(0.9), 1e-6);  // p(b | a)
  EXPECT_TRUE(r[0].is_greedy);
  EXPECT_EQ(r[0].tokens, 1);
  EXPECT_NEAR(r[1].logprob, std::log(0.5) + std::log(0.1), 1e-6);
  EXPECT_FALSE(r[1].is_greedy);  // ' ' is greedy, 'x' is not
  EXPECT_NEAR(r[2].logprob, std::log(0.9) + std::log(0.2 / 253), 1e-5);
  // Identical inputs share a forward pass: four one-token choices, one row.
  int64_t rows_seen = 0;
  const LogitsFn counting = [&](const at::Tensor& ids) {
    rows_seen += ids.size(0);
    return model(ids);
  };
  const auto shared = ComputeLoglikelihoods({{"a", "b"}, {"a", "x"}, {"a", "y"}, {"q", "b"}}, tok,
                                            counting, opt);
  EXPECT_EQ(rows_seen, 2);
  EXPECT_NEAR(shared[0].logprob, std::log(0.9), 1e-6);
  EXPECT_NEAR(shared[1].logprob, std::log(0.1 / 255), 1e-5);
  EXPECT_NEAR(shared[3].logprob, std::log(0.2 / 253), 1e-5);
  // A window shorter than the input keeps the last tokens: same scores here.
  opt.max_length = 2;
  const auto cut = ComputeLoglikelihoods({{"xyza", "b"}}, tok, model, opt);
  EXPECT_NEAR(cut[0].logprob, std::log(0.9), 1e-6);
}

}  // namespace
}  // namespace lifeline::recovery
