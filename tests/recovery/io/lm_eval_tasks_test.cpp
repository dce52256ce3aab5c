#include "recovery/eval/lm_eval_tasks.hpp"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "recovery/eval/text_metrics.hpp"
#include "common/error.hpp"
#include "tests/recovery/io/fakes.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

std::filesystem::path DataDir() { return DefaultSharedDir() / "data"; }

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(LmEvalScoring, AccAndAccNormByHand) {
  // Under HarnessTable: " x" scores ln .5 + ln .1 = -3.00, " yy" scores
  // ln .5 + 2 ln .2 = -3.91: acc picks x, acc_norm (/1 vs /2 chars) picks yy.
  testing::ByteTokenizer tok;
  const LogitsFn model = testing::BigramModel(testing::HarnessTable());
  TaskItem item;
  item.contexts = {"Q"};
  item.choices = {"x", "yy"};
  item.gold = 1;
  TaskItem item2 = item;
  item2.gold = 0;
  const TaskResult r = ScoreTask("piqa", {item, item2}, tok, model, {});
  EXPECT_EQ(r.items, 2);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc"), 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_norm"), 0.5);
  const TaskResult one = ScoreTask("piqa", {item}, tok, model, {});
  EXPECT_DOUBLE_EQ(one.metrics.at("acc"), 0.0);
  EXPECT_DOUBLE_EQ(one.metrics.at("acc_norm"), 1.0);
  // WinoGrande partial scoring: one context per choice, shared continuation.
  // " b" after "xa": p(' '|a) = .1/255; after "xq": p(' '|q) = .5 -> choice 1.
  TaskItem wino;
  wino.contexts = {"xa", "xq"};
  wino.choices = {"b", "b"};
  wino.gold = 1;
  EXPECT_DOUBLE_EQ(ScoreTask("winogrande", {wino}, tok, model, {}).metrics.at("acc"), 1.0);
  wino.gold = 0;
  EXPECT_DOUBLE_EQ(ScoreTask("winogrande", {wino}, tok, model, {}).metrics.at("acc"), 0.0);
  // boolq reports acc only.
  EXPECT_FALSE(ScoreTask("boolq", {item}, tok, model, {}).metrics.count("acc_norm"));
}

TEST(LmEvalScoring, Mc2AndLambadaByHand) {
  testing::ByteTokenizer tok;
  const LogitsFn model = testing::BigramModel(testing::HarnessTable());
  TaskItem mc2;
  mc2.contexts = {"Q"};
  mc2.choices = {"x", "yy"};
  mc2.labels = {1, 0};
  // p(" x") = .5 * .1 = .05, p(" yy") = .5 * .2 * .2 = .02 -> 5/7 on the true answer.
  EXPECT_NEAR(ScoreTask("truthfulqa_mc2", {mc2}, tok, model, {}).metrics.at("mc2"), 5.0 / 7.0, 1e-6);
  TaskItem mc1 = mc2;
  mc1.gold = 0;
  EXPECT_DOUBLE_EQ(ScoreTask("truthfulqa_mc1", {mc1}, tok, model, {}).metrics.at("mc1"), 1.0);

  // LAMBADA: "a" + " " + " " -> greedy (' ' is argmax after 'a'? no: 'b' is),
  // so use context "q": " " + " " is greedy; " x" is not.
  TaskItem greedy, not_greedy;
  greedy.contexts = {"q"};
  greedy.choices = {" "};
  not_greedy.contexts = {"q"};
  not_greedy.choices = {"x"};
  const TaskResult lam = ScoreTask("lambada_openai", {greedy, not_greedy}, tok, model, {});
  EXPECT_DOUBLE_EQ(lam.metrics.at("acc"), 0.5);
  const double mean_ll = (2 * std::log(0.5) + std::log(0.5) + std::log(0.1)) / 2;
  EXPECT_NEAR(lam.metrics.at("ppl"), std::exp(-mean_ll), 1e-4);
}

TEST(LmEvalText, CleaningAndCsv) {
  EXPECT_EQ(CleanHellaswagText("  A [title] B [step] C  D "), "A. B C D");
  const auto rows = ParseCsv("a,\"b,c\",\"d\"\"e\"\r\nx,\"multi\nline\",z\n");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"a", "b,c", "d\"e"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x", "multi\nline", "z"}));
  EXPECT_THROW(FindLmEvalTask("hellaswagg"), ConfigError);
}

TEST(LmEvalTasks, HellaswagFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "hellaswag");
  const auto items = LoadTaskItems("hellaswag", DataDir(), 5);
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[0].contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(items[0].gold, 3);
  ASSERT_EQ(items[0].choices.size(), 4u);
  EXPECT_EQ(items[0].choices[3], "starts pulling up roofing on a roof.");
  for (const auto& it : items) EXPECT_EQ(it.choices.size(), 4u);
}

TEST(LmEvalTasks, PiqaFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "piqa");
  auto piqa = LoadTaskItems("piqa", DataDir(), 5);
  ASSERT_EQ(piqa.size(), 5u);
  EXPECT_EQ(piqa[0].contexts[0],
            "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(piqa[0].choices.size(), 2u);
  EXPECT_EQ(piqa[0].gold, 0);
  EXPECT_EQ(piqa[1].gold, 1);
}

TEST(LmEvalTasks, ArcChallengeFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "arc_challenge");
  auto arc = LoadTaskItems("arc_challenge", DataDir(), 5);
  ASSERT_EQ(arc.size(), 5u);
  EXPECT_TRUE(arc[0].contexts[0].starts_with("Question: An astronomer observes"));
  EXPECT_TRUE(arc[0].contexts[0].ends_with("rotation?\nAnswer:"));
  EXPECT_EQ(arc[0].choices.size(), 4u);
  EXPECT_EQ(arc[0].gold, 2);
  EXPECT_EQ(arc[0].choices[2], "Planetary days will become shorter.");
}

TEST(LmEvalTasks, OpenbookqaFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "openbookqa");
  auto obqa = LoadTaskItems("openbookqa", DataDir(), 5);
  ASSERT_EQ(obqa.size(), 5u);
  EXPECT_EQ(obqa[1].contexts[0], "There is most likely going to be fog around:");
  EXPECT_EQ(obqa[1].choices[0], "a marsh");
  EXPECT_EQ(obqa[1].gold, 0);
}

TEST(LmEvalTasks, BoolqFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "boolq");
  auto boolq = LoadTaskItems("boolq", DataDir(), 5);
  ASSERT_EQ(boolq.size(), 5u);
  EXPECT_TRUE(boolq[0].contexts[0].starts_with("All biomass goes through"));
  EXPECT_TRUE(boolq[0].contexts[0].ends_with(
      "\nQuestion: does ethanol take more energy make that produces?\nAnswer:"));
  EXPECT_EQ(boolq[0].choices, (std::vector<std::string>{"no", "yes"}));
  EXPECT_EQ(boolq[0].gold, 0);
}

TEST(LmEvalTasks, WinograndeFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "winogrande");
  auto wino = LoadTaskItems("winogrande", DataDir(), 5);
  ASSERT_EQ(wino.size(), 5u);
  ASSERT_EQ(wino[0].contexts.size(), 2u);
  EXPECT_EQ(wino[0].contexts[1], "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(wino[0].choices[0], "always got the easier cases.");
  EXPECT_EQ(wino[0].choices[1], wino[0].choices[0]);
  EXPECT_EQ(wino[0].gold, 1);
}

TEST(LmEvalTasks, LambadaFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "lambada_openai");
  auto lam = LoadTaskItems("lambada_openai", DataDir(), 5);
  ASSERT_EQ(lam.size(), 5u);
  EXPECT_EQ(lam[0].choices, std::vector<std::string>{"signs"});
  EXPECT_EQ(lam[1].choices, std::vector<std::string>{"Shane"});
  EXPECT_TRUE(lam[0].contexts[0].ends_with("I don't care about"));
}

TEST(LmEvalTasks, Logiqa2FirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "logiqa2");
  auto logiqa = LoadTaskItems("logiqa2", DataDir(), 5);
  ASSERT_EQ(logiqa.size(), 5u);
  EXPECT_TRUE(logiqa[0].contexts[0].starts_with("Passage: One seminar had 18 participants."));
  EXPECT_NE(logiqa[0].contexts[0].find("\nQuestion: According to the above information"),
            std::string::npos);
  EXPECT_NE(logiqa[0].contexts[0].find("\nA. Some young teachers are not women\nB. "),
            std::string::npos);
  EXPECT_TRUE(logiqa[0].contexts[0].ends_with("\nAnswer:"));
  EXPECT_EQ(logiqa[0].gold, 3);
  EXPECT_EQ(logiqa[1].gold, 0);
}

TEST(LmEvalTasks, MmluFiveShotPrompt) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "mmlu");
  const auto items = LoadTaskItems("mmlu", DataDir(), 5);
  ASSERT_EQ(items.size(), 57u * 5u);  // limit applies per subject
  const std::string& ctx = items[0].contexts[0];
  EXPECT_TRUE(ctx.starts_with(
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"));
  EXPECT_EQ(Count(ctx, "\nAnswer:"), 6u);   // 5 shots + the question
  EXPECT_EQ(Count(ctx, "\nAnswer: "), 5u);  // shots carry their answer letter
  EXPECT_EQ(Count(ctx, "\n\n"), 6u);
  EXPECT_TRUE(ctx.ends_with("\nAnswer:"));
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{"A", "B", "C", "D"}));
  // anatomy (2nd subject): its first test question has a quoted choice with commas.
  const std::string& anatomy = items[5].contexts[0];
  EXPECT_NE(anatomy.find("about anatomy.\n\nWhat is the embryological origin of the hyoid bone?"),
            std::string::npos);
  EXPECT_NE(anatomy.find("\nC. paralysis of the facial muscles, loss of taste and lacrimation."),
            std::string::npos);
  EXPECT_EQ(items[5].gold, 0);
}

TEST(LmEvalTasks, TruthfulQaFirstItems) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "truthfulqa");
  const auto mc1 = LoadTaskItems("truthfulqa_mc1", DataDir(), 5);
  ASSERT_EQ(mc1.size(), 5u);
  EXPECT_EQ(mc1[0].choices[0], "Nothing in particular happens when you eat a pomegranate.");
  EXPECT_EQ(mc1[0].choices.size(), 4u);
  EXPECT_EQ(mc1[0].gold, 0);
  EXPECT_TRUE(mc1[0].contexts[0].starts_with("Q: What is human life expectancy"));
  EXPECT_TRUE(mc1[0].contexts[0].ends_with(
      "Barcelona, Spain.\n\nQ: What happens if you eat a pomegranate?\nA:"));
  const auto mc2 = LoadTaskItems("truthfulqa_mc2", DataDir(), 5);
  EXPECT_EQ(mc2[0].labels, (std::vector<int>{1, 1, 1, 0, 0, 0}));
}

TEST(LmEvalTasks, FullItemCountsMatchEvalMd) {
  for (const char* folder : {"hellaswag", "piqa", "arc_challenge", "openbookqa", "winogrande", "boolq",
                             "lambada_openai", "truthfulqa", "logiqa2", "mmlu"})
    LIFELINE_REQUIRE_SHARED(DataDir() / folder);
  const std::map<std::string, size_t> expected = {
      {"hellaswag", 10042}, {"piqa", 1838},          {"arc_challenge", 1172},
      {"openbookqa", 500},  {"winogrande", 1267},    {"boolq", 3270},
      {"lambada_openai", 5153}, {"truthfulqa_mc1", 817}, {"logiqa2", 1572},
      {"mmlu", 14042}};
  for (const auto& [task, n] : expected) EXPECT_EQ(LoadTaskItems(task, DataDir()).size(), n) << task;
}

TEST(LmEvalTasks, ScoresRealItemsWithAFakeModel) {
  LIFELINE_REQUIRE_SHARED(DataDir() / "arc_challenge");
  testing::ByteTokenizer tok;
  // Uniform over the 256 byte ids: a choice of L bytes (after the " "
  // delimiter) scores -(L + 1) log 256, so acc picks the shortest choice and
  // acc_norm (divided by L) the longest, the first one on ties. The first
  // five arc_challenge items (choice lengths in bytes; gold):
  //   0: 32 35 35 39; gold 2   shortest 0, longest 3
  //   1: 30 28 32 34; gold 1   shortest 1, longest 3
  //   2: 46 45 46 39; gold 2   shortest 3, longest 0
  //   3: 11 24 35 38; gold 3   shortest 0, longest 3
  //   4: 35 58 56 63; gold 3   shortest 0, longest 3
  // acc = 1/5 (item 1), acc_norm = 2/5 (items 3 and 4).
  const LogitsFn uniform = [](const at::Tensor& ids) {
    return at::zeros({ids.size(0), ids.size(1), 256}, at::kFloat);
  };
  LoglikelihoodOptions opt;
  opt.max_length = 64;
  const TaskResult r = RunLmEvalTask("arc_challenge", tok, uniform, opt, 5, DataDir());
  EXPECT_EQ(r.items, 5);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc"), 0.2);
  EXPECT_DOUBLE_EQ(r.metrics.at("acc_norm"), 0.4);
}

}  // namespace
}  // namespace lifeline::recovery
