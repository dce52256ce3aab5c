#pragma once
// Functional degradations of a model's weights (Recover-LoRA, EMNLP 2025):
// the weights of the linear layers matching a set of patterns are changed in
// place by a sequence of kinds, applied in the order given:
//   quant   - group-wise RTN fake quantization (quant/rtn.hpp);
//   noise   - a Gaussian perturbation scaled so that ||dW||_F equals a target,
//             relative (rel_l2 * ||W||_F) or absolute (l2), per layer;
//   dtype   - a round trip through fp16 / bf16 / fp8-e4m3 / fp8-e5m2
//             (round to nearest even, saturating; float_format.hpp);
//   bitflip - a fraction of the bits of the stored float32 weights flipped.
// Every kind is seeded from the run's seed, the kind's position and the
// layer's position, and reports its measured per-layer error.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "recovery/model/decoder.hpp"
#include "recovery/quant/rtn.hpp"

namespace lifeline::recovery {

struct DegradeConfig {
  std::vector<std::string> kinds = {"quant"};  // in order of application
  QuantConfig quant;                           // quant
  double noise_rel_l2 = 0;                     // noise: ||dW|| / ||W|| (used when > 0)
  double noise_l2 = 0;                         // noise: ||dW|| (used when > 0)
  std::string dtype = "fp8-e4m3";              // dtype
  double bitflip_rate = 1e-5;                  // bitflip: fraction of the stored bits
  uint64_t seed = 0;
};

// The default strength of noise when neither target is given.
constexpr double kDefaultNoiseRelL2 = 0.1;
// Upper limit of bitflip_rate (positions are drawn without replacement).
constexpr double kMaxBitflipRate = 0.5;

// The kinds DegradeConfig::kinds may hold.
const std::vector<std::string>& DegradationKinds();

// Checks `cfg` without touching a model: known kinds, each at most once, a
// strength for each. ConfigError naming `where(key)` ("--degrade",
// "--noise-l2", ...) and the recipe key otherwise.
void CheckDegradeConfig(const DegradeConfig& cfg);

// Per-layer result of the quant kind (for the packed-size accounting).
struct DegradationResult {
  nlohmann::json report;                    // the recovery.json `degradation` object
  std::vector<LayerQuantReport> quantized;  // layers the quant kind changed
};

// Applies cfg.kinds to every linear matching `patterns` (ConfigError naming
// `what` when a pattern matches no layer, or when a kind cannot apply to a
// layer). Bit flips that turn a weight into NaN or inf are counted; when any
// did, the model is left degraded and a ConfigError says how many and where
// (a model with non-finite weights has no meaningful metric).
DegradationResult ApplyDegradations(Decoder& model, const std::vector<std::string>& patterns,
                                    const DegradeConfig& cfg, const std::string& what = "--layers");

// The seed of kind number `kind_index` on layer number `layer_index`.
uint64_t DegradeSeed(uint64_t seed, size_t kind_index, size_t layer_index);

// Kinds of a layer flip, by bit position of a float32: 31 sign, 23..30
// exponent, 0..22 mantissa.
struct BitflipCounts {
  int64_t drawn = 0;       // positions drawn
  int64_t flipped = 0;     // bits that differ afterwards (popcount of old ^ new)
  int64_t sign = 0, exponent = 0, mantissa = 0;
  int64_t nonfinite = 0;   // values that became NaN or inf
};
// Flips a Binomial(32 * numel, rate) number of distinct bit positions of the
// float32 tensor `w` (contiguous, CPU) in place, drawn by mt19937_64(seed).
BitflipCounts FlipBits(at::Tensor& w, double rate, uint64_t seed);

// Adds Gaussian noise to `w` (float32, CPU) scaled so ||dW||_F = target_l2.
void AddScaledNoise(at::Tensor& w, double target_l2, uint64_t seed);

}  // namespace lifeline::recovery
