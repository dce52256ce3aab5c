#include "recovery/eval/gsm8k.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "recovery/eval/text_metrics.hpp"
#include "tests/recovery/io/fakes.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

std::filesystem::path DataDir() { return DefaultSharedDir() / "data"; }

// Expected values below were checked by hand against lm-eval's gsm8k filters
// (Python re.findall with the task's regexes, then its exact_match
// normalisation).
TEST(Gsm8k, StrictMatchTakesTheFirstHashAnswer) {
  EXPECT_EQ(Gsm8kStrictExtract(" She has 5 + 3 = 8 apples.\n#### 8"), "8");
  EXPECT_EQ(Gsm8kStrictExtract(" #### -7 degrees"), "-7");
  EXPECT_EQ(Gsm8kStrictExtract(" 12 then #### 1,000.5.\n"), "1,000.5.");
  EXPECT_EQ(Gsm8kStrictExtract("#### x then #### 3 and #### 4"), "3");
  EXPECT_EQ(Gsm8kStrictExtract(" The answer is $1,234."), "[invalid]");  // no "#### "
  EXPECT_EQ(Gsm8kStrictExtract(" #### $5 or 6"), "[invalid]");          // '$' is not in the class
  EXPECT_EQ(Gsm8kStrictExtract(" #### - 5"), "[invalid]");              // '-' alone is no number
  EXPECT_EQ(Gsm8kStrictExtract(" I don't know"), "[invalid]");
}

TEST(Gsm8k, FlexibleExtractTakesTheLastNumber) {
  EXPECT_EQ(Gsm8kFlexibleExtract(" She has 5 + 3 = 8 apples.\n#### 8"), "8");
  EXPECT_EQ(Gsm8kFlexibleExtract(" The answer is $1,234."), "$1,234.");
  EXPECT_EQ(Gsm8kFlexibleExtract(" So x = -3."), "-3.");
  EXPECT_EQ(Gsm8kFlexibleExtract(" #### $5 or 6"), "6");
  EXPECT_EQ(Gsm8kFlexibleExtract(" - then 7-"), "7");
  EXPECT_EQ(Gsm8kFlexibleExtract(" costs $18.00 total 3"), "3");
  EXPECT_EQ(Gsm8kFlexibleExtract(" I don't know"), "[invalid]");
  EXPECT_EQ(Gsm8kFlexibleExtract("#### ."), "[invalid]");  // one '.' is shorter than {2,}
}

TEST(Gsm8k, NormalizationRemovesCommasDollarsAndATrailingPeriod) {
  EXPECT_EQ(Gsm8kNormalize("$1,234."), "1234");
  EXPECT_EQ(Gsm8kNormalize("-3."), "-3");
  EXPECT_EQ(Gsm8kNormalize("1,000.5.\n"), "1000.5\n");  // "\.$" also matches before a final newline
  EXPECT_EQ(Gsm8kNormalize("[invalid]"), "[invalid]");
  EXPECT_EQ(Gsm8kNormalize("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"), "18");
  EXPECT_EQ(Gsm8kNormalize("a #### b #### 7"), "7");  // up to the last "#### "
}

TEST(Gsm8k, CutsTheGenerationAtEachStopSequence) {
  EXPECT_EQ(Gsm8kCutAtStops(" 4 + 4 = 8\n#### 8\n\nQuestion: next"), " 4 + 4 = 8\n#### 8\n\n");
  EXPECT_EQ(Gsm8kCutAtStops(" #### 8</s>junk<|im_end|>"), " #### 8");
  EXPECT_EQ(Gsm8kCutAtStops(" no stop"), " no stop");
}

TEST(Gsm8k, PromptIsFiveShotsThenTheQuestion) {
  std::vector<Gsm8kItem> items;
  for (int i = 0; i < 6; ++i) items.push_back({"q" + std::to_string(i) + "?", "a\n#### " + std::to_string(i)});
  EXPECT_EQ(Gsm8kPrompt(items, 5),
            "Question: q0?\nAnswer: a\n#### 0\n\n"
            "Question: q1?\nAnswer: a\n#### 1\n\n"
            "Question: q2?\nAnswer: a\n#### 2\n\n"
            "Question: q3?\nAnswer: a\n#### 3\n\n"
            "Question: q4?\nAnswer: a\n#### 4\n\n"
            "Question: q5?\nAnswer:");
}

TEST(Gsm8k, FirstRealRequestMatchesTheHandCheckedText) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "gsm8k");
  const auto items = LoadGsm8k(DataDir());
  ASSERT_EQ(items.size(), 1319u);
  const std::string p = Gsm8kPrompt(items, 5);
  EXPECT_TRUE(p.starts_with("Question: Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast"));
  EXPECT_NE(p.find("at the farmer\u2019s market.\n#### 18\n\nQuestion: A robe takes 2 bolts of blue fiber"),
            std::string::npos);
  EXPECT_NE(p.find("#### 20\n\nQuestion: Kylar went to the store to buy glasses"), std::string::npos);
  EXPECT_TRUE(p.ends_with("Kylar wants to buy 16 glasses. How much does he need to pay for them?\nAnswer:"));
}

TEST(Gsm8k, ScoresAFakeGeneratorStrictAndFlexible) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "gsm8k");
  testing::ByteTokenizer tok;
  // Scored items 6, 7 and 8 have answers 64, 260 and 160. The fake model
  // answers "#### 64", then "260" without "####", then "#### 161"; each is
  // followed by a new question that the stop sequence cuts.
  const std::vector<std::string> replies = {" 8 * 8 = 64\n#### 64\n\nQuestion: #### 999",
                                            " they have 260.\n\nQuestion: 5", " #### 161\n\nQuestion: more"};
  size_t call = 0;
  std::vector<std::string> prompts;
  GenerateFn generate = [&](const std::vector<int64_t>& prompt, int64_t max_new,
                            const std::function<bool(const std::vector<int64_t>&)>& stop) {
    prompts.push_back(tok.Decode(prompt));
    std::vector<int64_t> out;
    for (unsigned char c : replies.at(call)) {
      out.push_back(c);
      if (static_cast<int64_t>(out.size()) >= max_new || stop(out)) break;
    }
    ++call;
    return out;
  };
  Gsm8kOptions opt;
  opt.max_length = 1 << 16;
  const TaskResult r = RunGsm8k(tok, generate, opt, 3, DataDir());
  EXPECT_EQ(r.items, 3);
  EXPECT_DOUBLE_EQ(r.metrics.at("strict_match"), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("flexible_extract"), 2.0 / 3.0);
  EXPECT_EQ(r.sizes.at("truncated_prompts"), 0);
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(prompts[0], Gsm8kPrompt(LoadGsm8k(DataDir()), 5));  // BOS (id 0) decodes to nothing
}

TEST(Gsm8k, LongPromptsKeepTheirLastTokens) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "gsm8k");
  testing::ByteTokenizer tok;
  std::vector<size_t> lengths;
  GenerateFn generate = [&](const std::vector<int64_t>& prompt, int64_t, const auto&) {
    lengths.push_back(prompt.size());
    return std::vector<int64_t>{'7'};
  };
  Gsm8kOptions opt;
  opt.max_length = 512;
  opt.max_new_tokens = 256;
  const TaskResult r = RunGsm8k(tok, generate, opt, 2, DataDir());
  EXPECT_EQ(lengths, (std::vector<size_t>{256, 256}));
  EXPECT_EQ(r.sizes.at("truncated_prompts"), 2);
  opt.max_new_tokens = 512;
  EXPECT_THROW(RunGsm8k(tok, generate, opt, 1, DataDir()), ConfigError);
}

}  // namespace
}  // namespace lifeline::recovery
