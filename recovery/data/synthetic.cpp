#include "recovery/data/synthetic.hpp"

#include <cstring>
#include <fstream>
#include <random>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/types.h>

#include "common/atomic_file.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {

namespace {
constexpr char kMagic[8] = {'L', 'L', 'S', 'Y', 'N', 'T', 'H', '1'};
constexpr uint32_t kVersion = 1;
}  // namespace

std::vector<std::vector<int64_t>> GenerateSynthetic(Decoder& teacher, const SyntheticConfig& cfg,
                                                    const SpecialIds& special,
                                                    const ProgressFn& progress) {
  const int64_t vocab = teacher->arch().vocab_size;
  if (cfg.samples <= 0 || cfg.max_len < 2 || cfg.batch <= 0 || cfg.temperature <= 0 ||
      cfg.top_k < 0 || cfg.min_greedy < 0 || cfg.max_greedy < cfg.min_greedy) {
    throw ConfigError(fmt::format(
        "synthetic data: invalid settings (samples {}, max_len {}, batch {}, temperature {}, "
        "top_k {}, greedy {}..{}); expected positive counts, max_len >= 2, temperature > 0",
        cfg.samples, cfg.max_len, cfg.batch, cfg.temperature, cfg.top_k, cfg.min_greedy,
        cfg.max_greedy));
  }
  // Candidate first tokens: every id except BOS/EOS.
  std::vector<int64_t> firsts;
  for (int64_t i = 0; i < vocab; ++i) {
    if (i != special.bos && i != special.eos) firsts.push_back(i);
  }
  std::mt19937_64 rng(cfg.seed);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed ^ 0x9e3779b97f4a7c15ULL);
  const bool bos = cfg.prepend_bos && special.bos >= 0;
  const int64_t k = cfg.top_k > 0 ? std::min(cfg.top_k, vocab) : vocab;
  const at::Device dev = teacher->device();
  torch::NoGradGuard no_grad;
  const bool was_training = teacher->is_training();
  teacher->eval();

  std::vector<std::vector<int64_t>> out;
  out.reserve(static_cast<size_t>(cfg.samples));
  int64_t walk = 0;
  while (static_cast<int64_t>(out.size()) < cfg.samples) {
    const int64_t B = std::min(cfg.batch, cfg.samples - static_cast<int64_t>(out.size()));
    std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(B));
    std::vector<int64_t> greedy(static_cast<size_t>(B));
    std::vector<bool> done(static_cast<size_t>(B), false);
    std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(firsts.size()) - 1);
    std::uniform_int_distribution<int64_t> ng(cfg.min_greedy, cfg.max_greedy);
    for (int64_t b = 0; b < B; ++b) {
      if (bos) seqs[b].push_back(special.bos);
      const int64_t first =
          cfg.walk_vocab ? firsts[static_cast<size_t>(walk++) % firsts.size()] : firsts[pick(rng)];
      seqs[b].push_back(first);
      greedy[b] = ng(rng);
    }
    KvCache cache = teacher->NewCache(B, cfg.max_len);
    // Prefill the common prefix (BOS + first token).
    std::vector<int64_t> flat;
    for (const auto& s : seqs) flat.insert(flat.end(), s.begin(), s.end());
    at::Tensor input =
        at::tensor(flat, at::kLong).view({B, static_cast<int64_t>(seqs[0].size())}).to(dev);
    int64_t step = 0;  // tokens generated after the first token
    while (static_cast<int64_t>(seqs[0].size()) < cfg.max_len) {
      const at::Tensor logits = teacher->Forward(input, &cache).select(1, -1).to(at::kCPU);  // (B, V)
      const at::Tensor argmax = logits.argmax(-1);                                         // (B)
      auto [top_v, top_i] = (logits / cfg.temperature).topk(k, -1);                          // (B, k)
      const at::Tensor probs = at::softmax(top_v, -1);
      const at::Tensor sampled =
          top_i.gather(1, at::multinomial(probs, 1, /*replacement=*/false, gen)).squeeze(1);
      const auto* am = argmax.data_ptr<int64_t>();
      const auto* sm = sampled.data_ptr<int64_t>();
      std::vector<int64_t> next(static_cast<size_t>(B));
      bool all_done = true;
      for (int64_t b = 0; b < B; ++b) {
        next[b] = step < greedy[b] ? am[b] : sm[b];
        if (!done[b]) {
          seqs[b].push_back(next[b]);
          if (next[b] == special.eos || next[b] == special.bos) done[b] = true;
        } else {
          seqs[b].push_back(next[b]);  // kept aligned; trimmed below
        }
        all_done = all_done && done[b];
      }
      ++step;
      if (all_done) break;
      input = at::tensor(next, at::kLong).view({B, 1}).to(dev);
    }
    for (int64_t b = 0; b < B; ++b) {
      auto& s = seqs[b];
      const size_t start = bos ? 2 : 1;
      for (size_t i = start; i < s.size(); ++i) {
        if (s[i] == special.eos || s[i] == special.bos) {
          s.resize(i + 1);
          break;
        }
      }
      out.push_back(std::move(s));
    }
    if (progress) progress(static_cast<int64_t>(out.size()), cfg.samples);
  }
  if (was_training) teacher->train();
  return out;
}

void SaveSequences(const std::filesystem::path& path,
                   const std::vector<std::vector<int64_t>>& sequences, int64_t vocab_size,
                   uint64_t seed) {
  AtomicFile out(path);
  auto put = [&out](const void* p, size_t n) { out.Write(std::string_view(static_cast<const char*>(p), n)); };
  put(kMagic, 8);
  const uint32_t version = kVersion, reserved = 0;
  const uint64_t count = sequences.size(), vocab = static_cast<uint64_t>(vocab_size);
  put(&version, 4);
  put(&reserved, 4);
  put(&count, 8);
  put(&vocab, 8);
  put(&seed, 8);
  for (const auto& s : sequences) {
    const uint32_t len = static_cast<uint32_t>(s.size());
    put(&len, 4);
  }
  for (const auto& s : sequences) {
    std::vector<int32_t> v(s.begin(), s.end());
    put(v.data(), v.size() * 4);
  }
  out.Commit();
}

std::vector<std::vector<int64_t>> LoadSequences(const std::filesystem::path& path,
                                                int64_t expected_vocab) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: synthetic data file not found", path.string()));
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  constexpr uint64_t kHeader = 8 + 4 + 4 + 8 + 8 + 8;
  auto bad = [&](const std::string& why) {
    return ConfigError(fmt::format("{}: invalid synthetic data file: {}", path.string(), why));
  };
  if (size < kHeader) throw bad(fmt::format("{} bytes, shorter than the {}-byte header", size, kHeader));
  char magic[8];
  uint32_t version = 0, reserved = 0;
  uint64_t count = 0, vocab = 0, seed = 0;
  in.read(magic, 8);
  in.read(reinterpret_cast<char*>(&version), 4);
  in.read(reinterpret_cast<char*>(&reserved), 4);
  in.read(reinterpret_cast<char*>(&count), 8);
  in.read(reinterpret_cast<char*>(&vocab), 8);
  in.read(reinterpret_cast<char*>(&seed), 8);
  if (std::memcmp(magic, kMagic, 8) != 0) throw bad("bad magic (expected LLSYNTH1)");
  if (version != kVersion) throw bad(fmt::format("version {} (expected {})", version, kVersion));
  if (count > (size - kHeader) / 4) throw bad(fmt::format("count {} exceeds the file size", count));
  if (expected_vocab > 0 && vocab != static_cast<uint64_t>(expected_vocab)) {
    throw bad(fmt::format("vocabulary size {} does not match the model's {}", vocab, expected_vocab));
  }
  std::vector<uint32_t> lens(count);
  in.read(reinterpret_cast<char*>(lens.data()), static_cast<std::streamsize>(count * 4));
  uint64_t total = 0;
  for (auto l : lens) total += l;
  const uint64_t expected = kHeader + count * 4 + total * 4;
  if (expected != size) {
    throw bad(fmt::format("lengths imply {} bytes, file has {} bytes", expected, size));
  }
  std::vector<std::vector<int64_t>> out(count);
  for (uint64_t i = 0; i < count; ++i) {
    std::vector<int32_t> v(lens[i]);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    for (int32_t t : v) {
      if (t < 0 || static_cast<uint64_t>(t) >= vocab) {
        throw bad(fmt::format("sequence {} has token {} outside the vocabulary of {}", i, t, vocab));
      }
    }
    out[i].assign(v.begin(), v.end());
  }
  if (!in) throw bad("read error");
  return out;
}

}  // namespace lifeline::recovery
