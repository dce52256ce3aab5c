// Hugging Face byte-level BPE tokenizer.json (GPT-2, Qwen2/Qwen3, Llama 3).
#include <algorithm>
#include <climits>
#include <memory>
#include <new>
#include <fstream>
#include <iterator>
#include <mutex>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pcre2.h>

#include "recovery/tokenizer/tokenizer.hpp"
#include "common/yaml_util.hpp"
#include "common/error.hpp"

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

}  // namespace

// ---- RegexSplitter -------------------------------------------------------

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& where, bool literal)
    : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // UTF + UCP: \p{..}, \s, \d follow Unicode properties. Invalid UTF-8 in the
  // text never matches, so its bytes end up as pieces of their own.
  const uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err,
                        &err_offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw ConfigError(fmt::format("{}: regex '{}' does not compile at offset {}: {}", where, pattern,
                                  static_cast<size_t>(err_offset), reinterpret_cast<const char*>(msg)));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
}

RegexSplitter::~RegexSplitter() {
  if (code_) pcre2_code_free(code_);
}

std::vector<std::string> RegexSplitter::Split(const std::string& text) const {
  std::vector<std::string> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
  if (!md) throw std::bad_alloc();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap = 0;     // start of the text not yet emitted
  size_t offset = 0;  // where the next match attempt starts
  while (offset <= text.size()) {
    const int rc = pcre2_match(code_, subject, text.size(), offset, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(fmt::format("pre-tokenizer regex '{}' failed on the text at byte {}: {}", pattern_,
                              offset, reinterpret_cast<const char*>(msg)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (begin > gap) out.push_back(text.substr(gap, begin - gap));  // unmatched text stays a piece
    if (end > begin) {
      out.push_back(text.substr(begin, end - begin));
      gap = end;
      offset = end;
    } else {  // empty match: step over one character
      gap = begin;
      offset = begin + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
  }
  pcre2_match_data_free(md);
  if (gap < text.size()) out.push_back(text.substr(gap));
  return out;
}

namespace {

// ByteLevel's own split (use_regex: true): GPT-2's pattern.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

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
    // Strict: a duplicate key (which nlohmann would silently resolve) is an error with its line.
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const json j = ParseJsonStrict(text, path_);
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

    // Pre-tokenizer: ByteLevel alone (its GPT-2 regex) or Split(regex) +
    // ByteLevel; each regex step runs in order on the pieces of the previous.
    bool byte_level = false;
    auto visit = [&](const json& pt, const std::string& key, auto& self) -> void {
      if (!pt.is_object()) return;
      const std::string t = pt.value("type", "");
      if (t == "Sequence") {
        const json subs = pt.value("pretokenizers", json::array());
        for (size_t i = 0; i < subs.size(); ++i)
          self(subs[i], fmt::format("{}.pretokenizers[{}]", key, i), self);
      } else if (t == "ByteLevel") {
        byte_level = true;
        if (pt.value("add_prefix_space", false)) add_prefix_space_ = true;
        if (pt.value("use_regex", true))
          splits_.push_back(std::make_shared<RegexSplitter>(kGpt2Pattern, path_ + ": key '" + key + "'"));
      } else if (t == "Split") {
        const std::string behavior = pt.value("behavior", "Isolated");
        if (behavior != "Isolated" || pt.value("invert", false))
          throw ConfigError(fmt::format("{}: key '{}': Split with behavior '{}'{} is not supported; "
                                        "expected behavior Isolated without invert (the GPT-2, Qwen2 "
                                        "and Llama-3 tokenizers)",
                                        path_, key, behavior,
                                        pt.value("invert", false) ? " and invert" : ""));
        if (!pt.contains("pattern") || !pt["pattern"].is_object())
          throw ConfigError(fmt::format("{}: key '{}.pattern': missing; expected {{\"Regex\": ...}} or "
                                        "{{\"String\": ...}}",
                                        path_, key));
        const json& pat = pt["pattern"];
        if (pat.contains("Regex") && pat["Regex"].is_string()) {
          splits_.push_back(std::make_shared<RegexSplitter>(pat["Regex"].get<std::string>(),
                                                            path_ + ": key '" + key + ".pattern.Regex'"));
        } else if (pat.contains("String") && pat["String"].is_string()) {
          splits_.push_back(std::make_shared<RegexSplitter>(
              pat["String"].get<std::string>(), path_ + ": key '" + key + ".pattern.String'", true));
        } else {
          throw ConfigError(fmt::format("{}: key '{}.pattern': expected a string under Regex or String",
                                        path_, key));
        }
      } else if (!t.empty()) {
        throw ConfigError(fmt::format("{}: key '{}.type': pre-tokenizer '{}' is not supported; expected "
                                      "ByteLevel, Split or a Sequence of them",
                                      path_, key, t));
      }
    };
    if (j.contains("pre_tokenizer")) visit(j["pre_tokenizer"], "pre_tokenizer", visit);
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
    std::vector<std::string> pieces = {s};
    for (const auto& splitter : splits_) {
      std::vector<std::string> next;
      for (const std::string& p : pieces)
        for (std::string& q : splitter->Split(p)) next.push_back(std::move(q));
      pieces = std::move(next);
    }
    for (const std::string& piece : pieces) {
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
  std::vector<std::shared_ptr<const RegexSplitter>> splits_;  // pre-tokenizer regexes, in order
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
