// The Hugging Face pre-tokenizer regexes on non-Latin text. Every expected
// split below is worked out by hand from the pattern's alternatives and the
// Unicode general categories of the characters (noted beside each case).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.hpp"
#include "recovery/tokenizer/tokenizer.hpp"

namespace lifeline::recovery {
namespace {

using Pieces = std::vector<std::string>;

// GPT-2 (ByteLevel use_regex), Qwen2 and Llama-3 Split patterns as their
// tokenizer.json files spell them.
const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

Pieces Split(const char* pattern, const std::string& text) {
  return RegexSplitter(pattern, "test").Split(text);
}

TEST(PreTokenizer, ChineseLettersAndFullwidthPunctuation) {
  // 你好世界 are Lo; ， (U+FF0C) is Po and joins the next word through
  // [^\r\n\p{L}\p{N}]?\p{L}+; ！ (U+FF01, Po) is left to ?[^\s\p{L}\p{N}]+.
  EXPECT_EQ(Split(kQwen2, "你好世界，欢迎！"), (Pieces{"你好世界", "，欢迎", "！"}));
  // GPT-2 has no optional prefix: the comma is its own piece.
  EXPECT_EQ(Split(kGpt2, "你好世界，欢迎！"), (Pieces{"你好世界", "，", "欢迎", "！"}));
}

TEST(PreTokenizer, CyrillicWordsTakeTheirLeadingSpace) {
  EXPECT_EQ(Split(kQwen2, "Привет, мир"), (Pieces{"Привет", ",", " мир"}));
  EXPECT_EQ(Split(kGpt2, "Привет мир 123"), (Pieces{"Привет", " мир", " 123"}));
}

TEST(PreTokenizer, DevanagariVowelSignsAreNotLetters) {
  // हिन्दी = ह(Lo) ि(U+093F Mc) न(Lo) ्(U+094D Mn) द(Lo) ी(U+0940 Mc): marks
  // are not \p{L}, so a mark opens the next piece as its optional prefix,
  // and the final mark stands alone.
  EXPECT_EQ(Split(kQwen2, "हिन्दी"), (Pieces{"ह", "िन", "्द", "ी"}));
  // GPT-2: letters and marks alternate as separate runs.
  EXPECT_EQ(Split(kGpt2, "हिन्दी"), (Pieces{"ह", "ि", "न", "्", "द", "ी"}));
}

TEST(PreTokenizer, ArabicHarakatAndArabicIndicDigits) {
  // كَتَبَ = ك(Lo) َ(U+064E Mn) ت(Lo) َ ب(Lo) َ.
  EXPECT_EQ(Split(kQwen2, "كَتَبَ"), (Pieces{"ك", "َت", "َب", "َ"}));
  // ١٢٣ are Nd: Qwen2 takes one digit at a time; the space before a digit
  // matches none of the word alternatives and \s+(?!\S) fails, so \s+.
  EXPECT_EQ(Split(kQwen2, "مرحبا ١٢٣"), (Pieces{"مرحبا", " ", "١", "٢", "٣"}));
}

TEST(PreTokenizer, DigitsOfOtherScriptsAreNumbers) {
  // Thai ๑๒ (U+0E51, U+0E52, Nd) end the Latin letter run.
  EXPECT_EQ(Split(kQwen2, "x๑๒"), (Pieces{"x", "๑", "๒"}));
  // Devanagari १२३४ (Nd): Llama-3 groups up to three digits.
  EXPECT_EQ(Split(kLlama3, "१२३४"), (Pieces{"१२३", "४"}));
  // Fullwidth １２ (Nd) before 年 (Lo); a digit is never a letter prefix.
  EXPECT_EQ(Split(kLlama3, "２０２４年"), (Pieces{"２０２", "４", "年"}));
  EXPECT_EQ(Split(kQwen2, "２０２４年"), (Pieces{"２", "０", "２", "４", "年"}));
  // GPT-2 keeps a number run whole: Tamil ௧௨ (Nd) and superscript ² (No).
  EXPECT_EQ(Split(kGpt2, "a ௧௨ x²"), (Pieces{"a", " ௧௨", " x", "²"}));
}

TEST(PreTokenizer, EmojiAndCombiningMarks) {
  // 👋 (So) and the skin-tone modifier 🏽 (Sk) and ! (Po) are one run of
  // non-letters with the leading space.
  EXPECT_EQ(Split(kQwen2, "hi 👋🏽!"), (Pieces{"hi", " 👋🏽!"}));
  // e + U+0301 (Mn): the combining accent is not a letter (no NFC here).
  EXPECT_EQ(Split(kQwen2, "cafe\u0301 ok"), (Pieces{"cafe", "\u0301", " ok"}));
}

TEST(PreTokenizer, ContractionsNewlinesAndSpaces) {
  // Qwen2's contractions ignore case; GPT-2's do not.
  EXPECT_EQ(Split(kQwen2, "IT'S"), (Pieces{"IT", "'S"}));
  EXPECT_EQ(Split(kGpt2, "IT'S"), (Pieces{"IT", "'", "S"}));
  // A newline is never a word prefix; \s*[\r\n]+ takes it.
  EXPECT_EQ(Split(kQwen2, "a\nb"), (Pieces{"a", "\n", "b"}));
  // Two spaces before a word: \s+(?!\S) leaves the last one to the word.
  EXPECT_EQ(Split(kGpt2, "a  b"), (Pieces{"a", " ", " b"}));
  // U+3000 (ideographic space, Zs) is \s.
  EXPECT_EQ(Split(kQwen2, "中\u3000\u3000文"), (Pieces{"中", "\u3000", "\u3000文"}));
}

TEST(PreTokenizer, UnmatchedTextAndInvalidUtf8StayPieces) {
  // Isolated: text between matches is kept as pieces of its own.
  EXPECT_EQ(Split("[0-9]+", "ab12cd3"), (Pieces{"ab", "12", "cd", "3"}));
  // A stray continuation byte matches nothing and keeps its own piece.
  EXPECT_EQ(Split(kGpt2, "ab\x80" "cd"), (Pieces{"ab", "\x80", "cd"}));
  // The pieces always concatenate back to the input.
  const std::string mixed = "Qwen: 你好, мир! १२३ 👋 كَتَبَ\n\n  end";
  std::string joined;
  for (const auto& p : Split(kQwen2, mixed)) joined += p;
  EXPECT_EQ(joined, mixed);
}

TEST(PreTokenizer, BadPatternIsAConfigError) {
  try {
    RegexSplitter("(?i:unclosed", "tokenizer.json: key 'pre_tokenizer.pattern.Regex'");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json: key 'pre_tokenizer.pattern.Regex'"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("does not compile"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lifeline::recovery
