#pragma once
// Synthetic distillation data by hybrid sampling from the full-precision
// teacher (LLM-QAT; METHOD.md §2.2): a first token (random from the
// vocabulary, or walking it), 2–4 more tokens greedy (3–5 in total), then
// sampling with temperature and top-k until end of sequence or max length.
// Batched through the KV cache; seeded.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "recovery/model/decoder.hpp"

namespace lifeline::recovery {

struct SyntheticConfig {
  int64_t samples = 512;        // sequences to generate
  int64_t max_len = 256;        // tokens per sequence at most (BOS included)
  int64_t min_greedy = 2;       // greedy tokens after the first token, at least
  int64_t max_greedy = 4;       // ... and at most (inclusive)
  double temperature = 1.0;     // sampling temperature (> 0)
  int64_t top_k = 50;           // sample among the k most likely tokens (0 = all)
  bool walk_vocab = false;      // first tokens walk the vocabulary instead of random
  bool prepend_bos = true;      // start every sequence with BOS (when the model has one)
  int64_t batch = 64;           // sequences decoded together
  uint64_t seed = 0;            // seeds both the torch generator and std::mt19937_64
};

// Token ids a sequence may start with / stops at.
struct SpecialIds {
  int64_t bos = -1;  // -1 when none
  int64_t eos = -1;  // -1 when none
};

// Called after each batch with (sequences done, total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// Generates cfg.samples sequences. Generation of a sequence stops after it
// emits EOS, or BOS after its start (llama2.c models end stories with BOS);
// the stop token is kept. Throws ConfigError for invalid settings.
std::vector<std::vector<int64_t>> GenerateSynthetic(Decoder& teacher, const SyntheticConfig& cfg,
                                                    const SpecialIds& special,
                                                    const ProgressFn& progress = {});

// Binary file: magic "LLSYNTH1", uint32 version (1), uint32 reserved, uint64
// count, uint64 vocab_size, uint64 seed, `count` uint32 lengths, then all
// tokens as int32, little-endian.
void SaveSequences(const std::filesystem::path& path,
                   const std::vector<std::vector<int64_t>>& sequences, int64_t vocab_size,
                   uint64_t seed);
// Validates magic, version, counts against the file size and every token
// against the stored vocabulary size (and `expected_vocab` when > 0).
// Throws ConfigError naming the file.
std::vector<std::vector<int64_t>> LoadSequences(const std::filesystem::path& path,
                                                int64_t expected_vocab = 0);

}  // namespace lifeline::recovery
