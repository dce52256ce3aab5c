#pragma once
// Quantize and dequantize one row of floats in ggml's storage formats
// (roofline/spec/ggml_format.hpp), byte for byte as llama.cpp reads them.
//
// The block structs below mirror ggml/src/ggml-common.h field by field (fp16 as
// IEEE binary16 bit patterns, little-endian). Dequantizers follow ggml's
// dequantize_row_* exactly (same arithmetic, same order); quantizers are plain
// round-to-nearest with a min/max per sub-block, simpler than ggml's
// search-based ones but producing valid blocks whose scales are always finite.

#include <bit>
#include <cstdint>
#include <span>
#include <vector>

#include "roofline/spec/ggml_format.hpp"

namespace lifeline::measure {

static_assert(std::endian::native == std::endian::little, "GGUF blocks are written as little-endian memory images");

// --- fp16 ------------------------------------------------------------------

// IEEE binary16 bits of `f`, rounded to nearest even; NaN stays NaN and
// overflow gives +-inf (ggml's GGML_FP32_TO_FP16).
uint16_t Fp32ToFp16(float f);
// As Fp32ToFp16, but finite: values beyond +-65504 are clamped to +-65504 and
// NaN becomes 0. Every scale this file writes goes through it.
uint16_t Fp32ToFp16Finite(float f);
// The float value of binary16 bits `h` (exact).
float Fp16ToFp32(uint16_t h);

// --- block layouts (ggml-common.h) -----------------------------------------

inline constexpr int kQk4_0 = 32;   // weights per Q4_0 block
inline constexpr int kQk8_0 = 32;   // weights per Q8_0 block
inline constexpr int kQkK = 256;    // weights per k-quant super-block

// w = d * (q - 8); qs[j] holds weight j in its low nibble and weight j + 16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;                // fp16 scale
  uint8_t qs[kQk4_0 / 2];    // 4-bit values
};
// w = d * q.
struct BlockQ8_0 {
  uint16_t d;                // fp16 scale
  int8_t qs[kQk8_0];         // values
};
// 16 sub-blocks of 16: w = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4).
// Weight e's 2-bit value is bits 2*((e % 128) / 32) of qs[(e / 128) * 32 + e % 32].
struct BlockQ2_K {
  uint8_t scales[kQkK / 16];  // low nibble: scale, high nibble: min, per sub-block
  uint8_t qs[kQkK / 4];       // 2-bit values
  uint16_t d;                 // fp16 super-scale of the scales
  uint16_t dmin;              // fp16 super-scale of the mins
};
// 16 sub-blocks of 16: w = d * (sc[s] - 32) * (q - (hmask bit ? 0 : 4)), q the 2 low bits
// (packed as in Q2_K); the high bit of weight e is bit e / 32 of hmask[e % 32]; the
// 6-bit sc[s] packs its low 4 bits in scales[s % 8] (low nibble for s < 8, high
// nibble after) and its high 2 bits in bits 2*(s / 4) of scales[8 + s % 4].
struct BlockQ3_K {
  uint8_t hmask[kQkK / 8];  // high bit of each 3-bit value
  uint8_t qs[kQkK / 4];     // low 2 bits
  uint8_t scales[12];       // 16 6-bit scales
  uint16_t d;               // fp16 super-scale
};
// 8 sub-blocks of 32: w = d * sc[s] * q - dmin * m[s], 6-bit sc/m packed as
// ggml's get_scale_min_k4 reads them; qs[32*c + l] holds weight 64*c + l in its
// low nibble and weight 64*c + 32 + l in its high nibble.
struct BlockQ4_K {
  uint16_t d;            // fp16 super-scale of the scales
  uint16_t dmin;         // fp16 super-scale of the mins
  uint8_t scales[12];    // 8 6-bit scales and 8 6-bit mins
  uint8_t qs[kQkK / 2];  // 4-bit values
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
                  sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144,
              "block structs must match ggml-common.h");

// Q3_K's 6-bit scale of sub-block `s` (0..15), as stored (0..63, the weight uses value - 32).
int Q3KScale(const uint8_t scales[12], int s);
// Q4_K's 6-bit scale and min of sub-block `s` (0..7) (ggml's get_scale_min_k4).
void Q4KScaleMin(const uint8_t scales[12], int s, uint8_t* scale, uint8_t* min);

// --- rows ------------------------------------------------------------------

// Quantizes `x` (n floats, n a multiple of the type's block elements) into
// GgmlRowBytes(t, n) bytes at `out` (an even address: blocks hold fp16 fields).
// Throws std::invalid_argument on a bad n or address.
void QuantizeRow(GgmlType t, const float* x, int64_t n, uint8_t* out);
// Decodes GgmlRowBytes(t, n) bytes at `in` into n floats at `y`, as ggml does.
void DequantizeRow(GgmlType t, const uint8_t* in, int64_t n, float* y);

std::vector<uint8_t> QuantizeRow(GgmlType t, std::span<const float> x);
std::vector<float> DequantizeRow(GgmlType t, std::span<const uint8_t> bytes, int64_t n);

}  // namespace lifeline::measure
