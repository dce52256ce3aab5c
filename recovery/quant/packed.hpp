#pragma once
// Packed export of group-quantized weights: real 2/3/4-bit packing with a
// BF16 scale per group and, for the asymmetric scheme, a zero point stored
// at the weight's bit width. Size in bytes is exactly what the roofline
// charges (METHOD.md §1): n·b/8 + n_groups·(2 + b/8) (asymmetric) or
// n·b/8 + n_groups·2 (symmetric, zero implicit at 2^(b-1)).

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/quant/rtn.hpp"

namespace lifeline::recovery {

struct PackedWeight {
  int bits = 0;                      // 2, 3, 4 or 8
  int64_t rows = 0;                  // out features
  int64_t cols = 0;                  // in features
  int64_t group = 0;                 // weights per group along cols
  QuantScheme scheme = QuantScheme::kAsymmetric;
  std::vector<uint8_t> codes;        // rows*cols codes, `bits` each, LSB-first bit stream
  std::vector<uint16_t> scales_bf16; // one BF16 bit pattern per group (row-major)
  std::vector<uint8_t> zeros;        // one zero per group, `bits` each (empty when symmetric)

  int64_t Bytes() const {
    return static_cast<int64_t>(codes.size() + 2 * scales_bf16.size() + zeros.size());
  }
};

// Bytes of a packed (rows, cols) weight: ceil(n·b/8) + 2·n_groups +
// ceil(n_groups·b/8) (the last term only for the asymmetric scheme).
int64_t PackedWeightBytes(int64_t rows, int64_t cols, int bits, int64_t group);
int64_t PackedWeightBytes(int64_t rows, int64_t cols, const QuantConfig& cfg);

// Quantizes (same as QuantizeRtn) and packs.
PackedWeight PackWeight(const at::Tensor& weight, const QuantConfig& cfg,
                        const std::string& where = "weight");
// Packs already quantized codes.
PackedWeight PackQuantized(const GroupQuantized& q, const QuantConfig& cfg);
// Decodes to float32 (rows, cols); equals FakeQuantize(weight, cfg) exactly.
at::Tensor UnpackWeight(const PackedWeight& p);

// LSB-first bit packing of values < 2^bits.
std::vector<uint8_t> PackBits(const uint8_t* values, int64_t n, int bits);
std::vector<uint8_t> UnpackBits(const std::vector<uint8_t>& packed, int64_t n, int bits);

}  // namespace lifeline::recovery
