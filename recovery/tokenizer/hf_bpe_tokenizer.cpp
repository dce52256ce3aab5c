// Hugging Face byte-level BPE tokenizer.json (GPT-2, Qwen2/Qwen3, Llama 3).
#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "recovery/tokenizer/tokenizer.hpp"
#include "roofline/common/error.hpp"

namespace lifeline::recovery {
namespace {

using nlohmann::json;

std::string CodepointToUtf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest to
// U+0100 onwards in byte order.
std::vector<std::string> ByteToUnicode() {
  std::vector<std::string> table(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    table[b] = CodepointToUtf8(printable ? b : next++);
  }
  return table;
}

// Which pre-tokenizer regex the file uses.
enum class SplitStyle {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kQwen2,   // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,  // as kQwen2 with \p{N}{1,3}
};

// Unicode character classes the pre-tokenizer regexes use (\p{L}, \p{N},
// \s). Exact for ASCII and Latin-1; for the rest, whitespace, general and CJK
// punctuation, symbols, arrows, math, emoji and combining marks are classed
// from their blocks, decimal digits of common scripts are numbers, and every
// other code point counts as a letter (the approximation documented in
// tokenizer.hpp).
enum class Cls { kLetter, kNumber, kSpace, kOther };

Cls Classify(uint32_t c) {
  if (c < 0x80) {
    if (std::isalpha(static_cast<int>(c))) return Cls::kLetter;
    if (c >= '0' && c <= '9') return Cls::kNumber;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return Cls::kSpace;
    return Cls::kOther;
  }
  if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
      c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000)
    return Cls::kSpace;
  if (c < 0xA0) return Cls::kOther;  // C1 controls
  if (c < 0x100) {
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return Cls::kLetter;
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE)) return Cls::kNumber;
    if (c < 0xC0 || c == 0xD7 || c == 0xF7) return Cls::kOther;
    return Cls::kLetter;
  }
  struct Range {
    uint32_t lo, hi;
    Cls cls;
  };
  static constexpr Range kRanges[] = {
      {0x0300, 0x036F, Cls::kOther},   // combining diacritical marks
      {0x0660, 0x0669, Cls::kNumber},  // Arabic-Indic digits
      {0x06F0, 0x06F9, Cls::kNumber},  // extended Arabic-Indic digits
      {0x0966, 0x096F, Cls::kNumber},  // Devanagari digits
      {0x09E6, 0x09EF, Cls::kNumber},  // Bengali digits
      {0x200B, 0x206F, Cls::kOther},   // general punctuation (dashes, quotes, ...)
      {0x2070, 0x2070, Cls::kNumber},  // superscript zero
      {0x2074, 0x2079, Cls::kNumber},  // superscripts
      {0x2080, 0x2089, Cls::kNumber},  // subscripts
      {0x20A0, 0x20CF, Cls::kOther},   // currency symbols
      {0x20D0, 0x20FF, Cls::kOther},   // combining marks for symbols
      {0x2150, 0x218F, Cls::kNumber},  // number forms
      {0x2190, 0x2BFF, Cls::kOther},   // arrows, math, technical, boxes, shapes, dingbats
      {0x2E00, 0x2E7F, Cls::kOther},   // supplemental punctuation
      {0x3001, 0x3004, Cls::kOther},   // CJK punctuation
      {0x3008, 0x3020, Cls::kOther},   // CJK brackets and marks
      {0xFE00, 0xFE0F, Cls::kOther},   // variation selectors
      {0xFE30, 0xFE6F, Cls::kOther},   // CJK compatibility / small forms
      {0xFF01, 0xFF0F, Cls::kOther},   // fullwidth punctuation
      {0xFF10, 0xFF19, Cls::kNumber},  // fullwidth digits
      {0xFF1A, 0xFF20, Cls::kOther},
      {0xFF3B, 0xFF40, Cls::kOther},
      {0xFF5B, 0xFF65, Cls::kOther},
      {0x1F000, 0x1FAFF, Cls::kOther},  // emoji and pictographs
  };
  for (const Range& r : kRanges)
    if (c >= r.lo && c <= r.hi) return r.cls;
  return Cls::kLetter;
}

// One code point of the input: its class and byte span.
struct Cp {
  Cls cls;
  bool newline;  // \r or \n
  size_t begin, end;
};

std::vector<Cp> DecodeCodePoints(const std::string& s) {
  std::vector<Cp> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {  // malformed: take the lead byte alone
        n = 1;
        cp = c;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    // A stray byte >= 0x80 (invalid UTF-8) is classed as a letter.
    const Cls cls = (n == 1 && c >= 0x80) ? Cls::kLetter : Classify(cp);
    out.push_back({cls, cp == '\n' || cp == '\r', i, i + n});
    i += n;
  }
  return out;
}

// Splits `s` the way the style's regex does, on code points.
std::vector<std::string> PreTokenize(const std::string& s, SplitStyle style) {
  const std::vector<Cp> cps = DecodeCodePoints(s);
  const size_t n = cps.size();
  auto is = [&](size_t k, Cls c) { return k < n && cps[k].cls == c; };
  auto is_space_char = [&](size_t k) {  // the literal ' ' of " ?"
    return k < n && cps[k].end - cps[k].begin == 1 && s[cps[k].begin] == ' ';
  };
  auto run = [&](size_t k, Cls c) {
    while (k < n && cps[k].cls == c) ++k;
    return k;
  };
  // Contractions 's 't 're 've 'm 'll 'd (ASCII, so code points == bytes here).
  auto contraction = [&](size_t k, bool ignore_case) -> size_t {
    if (k >= n || s[cps[k].begin] != '\'' || cps[k].end - cps[k].begin != 1) return 0;
    auto ch = [&](size_t j) -> char {
      if (j >= n || cps[j].end - cps[j].begin != 1) return '\0';
      const char c = s[cps[j].begin];
      return ignore_case ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c;
    };
    const char a = ch(k + 1), b = ch(k + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
  };
  // \s+(?!\S) then \s+: a whitespace run, leaving its last space to the next
  // word when a non-space follows and the run is longer than one.
  auto trailing_space = [&](size_t k) -> size_t {
    const size_t j = run(k, Cls::kSpace);
    if (j == n) return j - k;
    return j - k >= 2 ? j - k - 1 : j - k;
  };

  std::vector<std::string> out;
  size_t i = 0;
  while (i < n) {
    size_t len = 0;  // in code points
    if (style == SplitStyle::kGpt2) {
      len = contraction(i, false);
      if (!len) {  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
        const size_t start = (is_space_char(i) && i + 1 < n) ? i + 1 : i;
        for (Cls c : {Cls::kLetter, Cls::kNumber, Cls::kOther})
          if (is(start, c)) {
            len = run(start, c) - i;
            break;
          }
      }
      if (!len) len = trailing_space(i);
    } else {
      len = contraction(i, true);
      if (!len) {  // [^\r\n\p{L}\p{N}]?\p{L}+
        size_t start = i;
        if (!cps[i].newline && !is(i, Cls::kLetter) && !is(i, Cls::kNumber) && is(i + 1, Cls::kLetter))
          start = i + 1;
        if (is(start, Cls::kLetter)) len = run(start, Cls::kLetter) - i;
      }
      if (!len && is(i, Cls::kNumber)) {  // \p{N} or \p{N}{1,3}
        const size_t max_digits = style == SplitStyle::kLlama3 ? 3 : 1;
        size_t j = i;
        while (j < n && j - i < max_digits && is(j, Cls::kNumber)) ++j;
        len = j - i;
      }
      if (!len) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
        const size_t start = (is_space_char(i) && i + 1 < n) ? i + 1 : i;
        if (is(start, Cls::kOther)) {
          size_t j = run(start, Cls::kOther);
          while (j < n && cps[j].newline) ++j;
          len = j - i;
        }
      }
      if (!len && is(i, Cls::kSpace)) {  // \s*[\r\n]+
        size_t j = i, last_newline = SIZE_MAX;
        for (; j < n && is(j, Cls::kSpace); ++j)
          if (cps[j].newline) last_newline = j;
        if (last_newline != SIZE_MAX) len = last_newline + 1 - i;
      }
      if (!len) len = trailing_space(i);
    }
    if (!len) len = 1;  // unreachable for valid input; never loop forever
    out.push_back(s.substr(cps[i].begin, cps[i + len - 1].end - cps[i].begin));
    i += len;
  }
  return out;
}

// Splits a UTF-8 string into its characters.
std::vector<std::string> Utf8Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    n = std::min(n, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

class HfBpeTokenizer final : public Tokenizer {
 public:
  explicit HfBpeTokenizer(const std::filesystem::path& path) : path_(path.string()) {
    std::ifstream in(path);
    if (!in) throw ConfigError(fmt::format("{}: cannot open tokenizer", path_));
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      throw ConfigError(fmt::format("{}: not valid JSON ({})", path_, e.what()));
    }
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
      throw ConfigError(fmt::format("{}: key 'model': missing; expected a Hugging Face "
                                    "tokenizer.json",
                                    path_));
    const json& model = j["model"];
    const std::string type = model.value("type", "BPE");
    if (type != "BPE")
      throw ConfigError(fmt::format("{}: key 'model.type': '{}' is not supported; expected BPE "
                                    "(byte-level). hint: use the sentencepiece tokenizer.model",
                                    path_, type));
    if (!model.contains("vocab") || !model["vocab"].is_object())
      throw ConfigError(fmt::format("{}: key 'model.vocab': missing or not an object", path_));
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
      if (!it.value().is_number_integer())
        throw ConfigError(fmt::format("{}: key 'model.vocab.{}': id is not an integer", path_,
                                      it.key()));
      AddToken(it.key(), it.value().get<int64_t>());
    }
    ignore_merges_ = model.value("ignore_merges", false);
    if (model.contains("merges")) {
      int64_t rank = 0;
      for (const json& m : model["merges"]) {
        std::string a, b;
        if (m.is_string()) {
          const std::string s = m.get<std::string>();
          const size_t sp = s.find(' ');
          if (sp == std::string::npos)
            throw ConfigError(fmt::format("{}: key 'model.merges[{}]': '{}' is not 'a b'", path_,
                                          rank, s));
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          a = m[0].get<std::string>();
          b = m[1].get<std::string>();
        } else {
          throw ConfigError(fmt::format("{}: key 'model.merges[{}]': expected \"a b\" or [a, b]",
                                        path_, rank));
        }
        ranks_.emplace(a + '\x01' + b, rank++);
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab_.find(model["unk_token"].get<std::string>());
      if (it != vocab_.end()) unk_id_ = it->second;
    }

    // Pre-tokenizer: ByteLevel alone (GPT-2 regex) or Split(regex) + ByteLevel.
    bool byte_level = false;
    auto visit = [&](const json& pt, auto& self) -> void {
      if (!pt.is_object()) return;
      const std::string t = pt.value("type", "");
      if (t == "Sequence") {
        for (const json& sub : pt.value("pretokenizers", json::array())) self(sub, self);
      } else if (t == "ByteLevel") {
        byte_level = true;
        if (pt.value("add_prefix_space", false)) add_prefix_space_ = true;
        if (pt.value("use_regex", true)) split_ = SplitStyle::kGpt2;
      } else if (t == "Split") {
        std::string re;
        if (pt.contains("pattern") && pt["pattern"].is_object())
          re = pt["pattern"].value("Regex", pt["pattern"].value("String", ""));
        if (re.find("\\p{N}{1,3}") != std::string::npos)
          split_ = SplitStyle::kLlama3;
        else if (re.find("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+") != std::string::npos)
          split_ = SplitStyle::kQwen2;
        else if (re.find(" ?\\p{L}+| ?\\p{N}+") != std::string::npos)
          split_ = SplitStyle::kGpt2;
        else
          throw ConfigError(fmt::format("{}: key 'pre_tokenizer': split regex '{}' is not one "
                                        "lifeline knows; expected the GPT-2, Qwen2 or Llama-3 "
                                        "pattern",
                                        path_, re));
      }
    };
    if (j.contains("pre_tokenizer")) visit(j["pre_tokenizer"], visit);
    if (!byte_level && j.contains("decoder") && j["decoder"].is_object() &&
        j["decoder"].value("type", "") == "ByteLevel")
      byte_level = true;
    if (!byte_level)
      throw ConfigError(fmt::format("{}: not a byte-level BPE tokenizer (no ByteLevel "
                                    "pre-tokenizer or decoder). hint: sentencepiece-style "
                                    "tokenizers load from their tokenizer.model",
                                    path_));

    for (const json& a : j.value("added_tokens", json::array())) {
      if (!a.is_object() || !a.contains("id") || !a.contains("content")) continue;
      const int64_t id = a["id"].get<int64_t>();
      const std::string content = a["content"].get<std::string>();
      AddToken(content, id);
      added_.push_back({content, id, a.value("special", false)});
    }
    std::sort(added_.begin(), added_.end(),
              [](const auto& x, const auto& y) { return x.content.size() > y.content.size(); });
    for (const char* name : {"<|begin_of_text|>", "<s>", "<|startoftext|>"})
      if (bos_id_ < 0 && vocab_.count(name)) bos_id_ = vocab_.at(name);
    for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>"})
      if (eos_id_ < 0 && vocab_.count(name)) eos_id_ = vocab_.at(name);

    const auto table = ByteToUnicode();
    for (int b = 0; b < 256; ++b) {
      byte_to_unicode_[b] = table[static_cast<size_t>(b)];
      unicode_to_byte_[table[static_cast<size_t>(b)]] = static_cast<unsigned char>(b);
    }
  }

  std::vector<int64_t> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> ids;
    if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
    size_t pos = 0;
    bool first_segment = true;
    while (pos < text.size()) {
      // Earliest (then longest) added token from pos.
      size_t best = std::string::npos;
      const AddedToken* hit = nullptr;
      for (const auto& a : added_) {
        if (a.content.empty()) continue;
        const size_t f = text.find(a.content, pos);
        if (f != std::string::npos && (best == std::string::npos || f < best)) {
          best = f;
          hit = &a;
        }
      }
      const size_t end = hit ? best : text.size();
      if (end > pos) EncodePlain(text.substr(pos, end - pos), first_segment, ids);
      first_segment = false;
      if (!hit) break;
      ids.push_back(hit->id);
      pos = best + hit->content.size();
    }
    return ids;
  }

  std::string Decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      auto it = id_to_token_.find(id);
      if (it == id_to_token_.end())
        throw ConfigError(fmt::format("{}: token id {} is not in the vocabulary", path_, id));
      const AddedToken* added = FindAdded(id);
      if (added) {
        if (!added->special) out += added->content;
        continue;
      }
      for (const std::string& ch : Utf8Chars(it->second)) {
        auto b = unicode_to_byte_.find(ch);
        if (b != unicode_to_byte_.end())
          out.push_back(static_cast<char>(b->second));
        else
          out += ch;
      }
    }
    if (add_prefix_space_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  int64_t VocabSize() const override { return vocab_size_; }
  int64_t BosId() const override { return bos_id_; }
  int64_t EosId() const override { return eos_id_; }

 private:
  struct AddedToken {
    std::string content;
    int64_t id;
    bool special;
  };

  void AddToken(const std::string& token, int64_t id) {
    if (id < 0) throw ConfigError(fmt::format("{}: token '{}' has negative id {}", path_, token, id));
    vocab_[token] = id;
    id_to_token_[id] = token;
    vocab_size_ = std::max(vocab_size_, id + 1);
  }

  const AddedToken* FindAdded(int64_t id) const {
    for (const auto& a : added_)
      if (a.id == id) return &a;
    return nullptr;
  }

  void EncodePlain(const std::string& text, bool first_segment, std::vector<int64_t>& ids) const {
    std::string s = text;
    if (add_prefix_space_ && first_segment && !s.empty() && s[0] != ' ') s = std::string(1, ' ') + s;
    for (const std::string& piece : PreTokenize(s, split_)) {
      std::string mapped;
      for (unsigned char c : piece) mapped += byte_to_unicode_[c];
      for (const std::string& sym : Bpe(mapped)) {
        auto it = vocab_.find(sym);
        if (it != vocab_.end()) {
          ids.push_back(it->second);
        } else if (unk_id_ >= 0) {
          ids.push_back(unk_id_);
        } else {
          throw ConfigError(fmt::format("{}: BPE produced '{}', which is not in the vocabulary "
                                        "(and the model has no unk_token)",
                                        path_, sym));
        }
      }
    }
  }

  // Classic GPT-2 BPE: merge the lowest-ranked adjacent pair everywhere, repeat.
  std::vector<std::string> Bpe(const std::string& word) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) return it->second;
    }
    std::vector<std::string> symbols;
    if (ignore_merges_ && vocab_.count(word)) {
      symbols.push_back(word);
    } else {
      symbols = Utf8Chars(word);
      while (symbols.size() > 1) {
        int64_t best_rank = INT64_MAX;
        for (size_t i = 0; i + 1 < symbols.size(); ++i) {
          auto r = ranks_.find(symbols[i] + '\x01' + symbols[i + 1]);
          if (r != ranks_.end() && r->second < best_rank) best_rank = r->second;
        }
        if (best_rank == INT64_MAX) break;
        std::vector<std::string> merged;
        for (size_t i = 0; i < symbols.size();) {
          if (i + 1 < symbols.size()) {
            auto r = ranks_.find(symbols[i] + '\x01' + symbols[i + 1]);
            if (r != ranks_.end() && r->second == best_rank) {
              merged.push_back(symbols[i] + symbols[i + 1]);
              i += 2;
              continue;
            }
          }
          merged.push_back(symbols[i]);
          ++i;
        }
        symbols = std::move(merged);
      }
    }
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < 100000) cache_.emplace(word, symbols);
    return symbols;
  }

  std::string path_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> id_to_token_;
  std::unordered_map<std::string, int64_t> ranks_;  // "a\x01b" -> merge rank
  std::vector<AddedToken> added_;                   // longest content first
  std::string byte_to_unicode_[256];
  std::unordered_map<std::string, unsigned char> unicode_to_byte_;
  SplitStyle split_ = SplitStyle::kGpt2;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  int64_t vocab_size_ = 0;
  int64_t unk_id_ = -1;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> LoadHfBpeTokenizer(const std::filesystem::path& path) {
  return std::make_unique<HfBpeTokenizer>(path);
}

}  // namespace lifeline::recovery
