#include "experiments/measure/ggml_quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lifeline::measure {

// --- fp16 ------------------------------------------------------------------

uint16_t Fp32ToFp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | (abs > 0x7f800000u ? 0x7e00 : 0x7c00);  // NaN / inf
  if (abs >= 0x47800000u) return sign | 0x7c00;                                // >= 65536: inf
  const uint32_t biased = abs >> 23;
  if (biased < 113) {  // below 2^-14: a binary16 subnormal (or zero)
    if (biased < 102) return sign;  // below 2^-25: rounds to zero
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - biased;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to
  // nearest even without a branch (random weights make a branch a coin flip);
  // a carry into the exponent is right, up to inf.
  uint32_t a = abs - (112u << 23);
  a += 0xfffu + ((a >> 13) & 1u);
  return sign | static_cast<uint16_t>(a >> 13);
}

uint16_t Fp32ToFp16Finite(float f) {
  if (std::isnan(f)) return 0;
  return Fp32ToFp16(std::clamp(f, -65504.0f, 65504.0f));
}

float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // exact
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

// --- helpers ---------------------------------------------------------------

namespace {

// A row of floats as finite fp16 (Fp32ToFp16Finite on each).
void RowToFp16Scalar(const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = Fp32ToFp16Finite(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

#if defined(__x86_64__)
// The same with the F16C instruction (IEEE round to nearest even, as the
// scalar code): clamp to +-65504 and NaN to 0 first.
__attribute__((target("f16c"))) void RowToFp16F16c(const float* x, int64_t n, uint8_t* out) {
  const __m128 lo = _mm_set1_ps(-65504.0f), hi = _mm_set1_ps(65504.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m128 v = _mm_loadu_ps(x + i);
    const __m128 ordered = _mm_cmpord_ps(v, v);                 // all ones unless NaN
    v = _mm_and_ps(_mm_min_ps(_mm_max_ps(v, lo), hi), ordered);  // max/min give lo for NaN; the mask makes it 0
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 2 * i), _mm_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  RowToFp16Scalar(x + i, n - i, out + 2 * i);
}
#endif

void RowToFp16(const float* x, int64_t n, uint8_t* out) {
#if defined(__x86_64__)
  static const bool kF16c = __builtin_cpu_supports("f16c");
  if (kF16c) return RowToFp16F16c(x, n, out);
#endif
  RowToFp16Scalar(x, n, out);
}

// Round to nearest (ties to even, as ggml's nearest_int) and clamp to [lo, hi];
// NaN gives lo.
int RoundClamp(float v, int lo, int hi) {
  if (!(v >= static_cast<float>(lo))) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  // |v| < 2^22 here: adding 1.5 * 2^23 leaves v rounded to even in the low mantissa bits.
  const float shifted = v + 12582912.0f;
  return static_cast<int>(std::bit_cast<int32_t>(shifted) & 0x007fffff) - 0x00400000;
}

// Packs 256 2-bit values as Q2_K and Q3_K store them: in each half of 128,
// byte l holds values l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6.
void Pack2Bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < kQkK; h += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[h / 4 + l] = static_cast<uint8_t>(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) | (L[h + l + 96] << 6));
    }
  }
}

// Smallest value (clamped to <= 0) and largest of x[0..n).
void MinMax(const float* x, int n, float* mn, float* mx) {
  float lo = 0.0f, hi = -INFINITY;
  for (int i = 0; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  if (!(hi >= lo)) hi = lo;  // all NaN
  *mn = lo;
  *mx = hi;
}

// --- Q4_0 / Q8_0 -----------------------------------------------------------

void QuantizeQ4_0(const float* x, int64_t nb, BlockQ4_0* y) {
  for (int64_t i = 0; i < nb; ++i, x += kQk4_0) {
    // The value of largest magnitude maps to -8, the end of the range with room.
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < kQk4_0; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        vmax = x[j];
      }
    }
    y[i].d = Fp32ToFp16Finite(vmax / -8.0f);
    const float d = Fp16ToFp32(y[i].d);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQk4_0 / 2; ++j) {
      const int q0 = RoundClamp(x[j] * id, -8, 7) + 8;
      const int q1 = RoundClamp(x[j + kQk4_0 / 2] * id, -8, 7) + 8;
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void DequantizeQ4_0(const BlockQ4_0* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQk4_0 / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * kQk4_0 + j] = x0 * d;
      y[i * kQk4_0 + j + kQk4_0 / 2] = x1 * d;
    }
  }
}

void QuantizeQ8_0(const float* x, int64_t nb, BlockQ8_0* y) {
  for (int64_t i = 0; i < nb; ++i, x += kQk8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQk8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    y[i].d = Fp32ToFp16Finite(amax / 127.0f);
    const float d = Fp16ToFp32(y[i].d);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQk8_0; ++j) y[i].qs[j] = static_cast<int8_t>(RoundClamp(x[j] * id, -127, 127));
  }
}

void DequantizeQ8_0(const BlockQ8_0* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    for (int j = 0; j < kQk8_0; ++j) y[i * kQk8_0 + j] = x[i].qs[j] * d;
  }
}

// --- Q2_K ------------------------------------------------------------------

void QuantizeQ2_K(const float* x, int64_t nb, BlockQ2_K* y) {
  constexpr int kSub = 16, kNumSub = kQkK / kSub;
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    // Per sub-block: w ~ scale * q - min with q in 0..3 spanning [-min, max].
    float scales[kNumSub], mins[kNumSub], max_scale = 0.0f, max_min = 0.0f;
    for (int s = 0; s < kNumSub; ++s) {
      float mn, mx;
      MinMax(x + kSub * s, kSub, &mn, &mx);
      scales[s] = (mx - mn) / 3.0f;
      mins[s] = -mn;
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    // 4-bit scales and mins under fp16 super-scales.
    y[i].d = Fp32ToFp16Finite(max_scale / 15.0f);
    y[i].dmin = Fp32ToFp16Finite(max_min / 15.0f);
    const float d = Fp16ToFp32(y[i].d), dmin = Fp16ToFp32(y[i].dmin);
    uint8_t L[kQkK] = {};
    for (int s = 0; s < kNumSub; ++s) {
      const int ls = d > 0.0f ? RoundClamp(scales[s] / d, 0, 15) : 0;
      const int lm = dmin > 0.0f ? RoundClamp(mins[s] / dmin, 0, 15) : 0;
      y[i].scales[s] = static_cast<uint8_t>(ls | (lm << 4));
      const float dl = d * ls, ml = dmin * lm;
      if (dl == 0.0f) continue;
      for (int l = 0; l < kSub; ++l) L[kSub * s + l] = static_cast<uint8_t>(RoundClamp((x[kSub * s + l] + ml) / dl, 0, 3));
    }
    Pack2Bit(L, y[i].qs);
  }
}

void DequantizeQ2_K(const BlockQ2_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(x[i].d);
    const float min = Fp16ToFp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int n = 0; n < kQkK; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        uint8_t sc = x[i].scales[is++];
        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l] >> shift) & 3) - ml;
        sc = x[i].scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l + 16] >> shift) & 3) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}

// --- Q3_K ------------------------------------------------------------------

void QuantizeQ3_K(const float* x, int64_t nb, BlockQ3_K* y) {
  constexpr int kSub = 16, kNumSub = kQkK / kSub;
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    // Symmetric per sub-block: the value of largest magnitude maps to -4 (q in -4..3).
    float scales[kNumSub], smax = 0.0f;
    for (int s = 0; s < kNumSub; ++s) {
      float amax = 0.0f, vmax = 0.0f;
      for (int l = 0; l < kSub; ++l) {
        const float v = x[kSub * s + l];
        if (std::fabs(v) > amax) {
          amax = std::fabs(v);
          vmax = v;
        }
      }
      scales[s] = vmax / -4.0f;
      if (std::fabs(scales[s]) > std::fabs(smax)) smax = scales[s];
    }
    // 6-bit signed scales (stored + 32) under an fp16 super-scale: smax maps to -32.
    y[i].d = Fp32ToFp16Finite(smax / -32.0f);
    const float d = Fp16ToFp32(y[i].d);
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    std::memset(y[i].hmask, 0, sizeof(y[i].hmask));
    uint8_t L[kQkK];
    for (int s = 0; s < kNumSub; ++s) {
      const int ls = (d != 0.0f ? RoundClamp(scales[s] / d, -32, 31) : 0) + 32;
      y[i].scales[s % 8] |= static_cast<uint8_t>((ls & 0xF) << (s < 8 ? 0 : 4));
      y[i].scales[8 + s % 4] |= static_cast<uint8_t>((ls >> 4) << (2 * (s / 4)));
      const float dl = d * (ls - 32);
      for (int l = 0; l < kSub; ++l) {
        const int q = dl != 0.0f ? RoundClamp(x[kSub * s + l] / dl, -4, 3) : 0;
        L[kSub * s + l] = static_cast<uint8_t>(q + 4);  // 0..7
      }
    }
    for (int e = 0; e < kQkK; ++e) {
      if (L[e] > 3) {
        y[i].hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
        L[e] -= 4;
      }
    }
    Pack2Bit(L, y[i].qs);
  }
}

void DequantizeQ3_K(const BlockQ3_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d_all = Fp16ToFp32(x[i].d);
    int8_t scales[16];
    for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>(Q3KScale(x[i].scales, s));
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < kQkK; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        float dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
        dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
        }
        shift += 2;
        m = static_cast<uint8_t>(m << 1);
      }
      q += 32;
    }
  }
}

// --- Q4_K ------------------------------------------------------------------

void QuantizeQ4_K(const float* x, int64_t nb, BlockQ4_K* y) {
  constexpr int kSub = 32, kNumSub = kQkK / kSub;
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    float scales[kNumSub], mins[kNumSub], max_scale = 0.0f, max_min = 0.0f;
    for (int s = 0; s < kNumSub; ++s) {
      float mn, mx;
      MinMax(x + kSub * s, kSub, &mn, &mx);
      scales[s] = (mx - mn) / 15.0f;
      mins[s] = -mn;
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    y[i].d = Fp32ToFp16Finite(max_scale / 63.0f);
    y[i].dmin = Fp32ToFp16Finite(max_min / 63.0f);
    const float d = Fp16ToFp32(y[i].d), dmin = Fp16ToFp32(y[i].dmin);
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    uint8_t L[kQkK] = {};
    for (int s = 0; s < kNumSub; ++s) {
      const int ls = d > 0.0f ? RoundClamp(scales[s] / d, 0, 63) : 0;
      const int lm = dmin > 0.0f ? RoundClamp(mins[s] / dmin, 0, 63) : 0;
      if (s < 4) {
        y[i].scales[s] = static_cast<uint8_t>(ls);
        y[i].scales[s + 4] = static_cast<uint8_t>(lm);
      } else {
        y[i].scales[s + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        y[i].scales[s - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        y[i].scales[s] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
      const float dl = d * ls, ml = dmin * lm;
      if (dl == 0.0f) continue;
      for (int l = 0; l < kSub; ++l) L[kSub * s + l] = static_cast<uint8_t>(RoundClamp((x[kSub * s + l] + ml) / dl, 0, 15));
    }
    for (int c = 0; c < kQkK / 64; ++c) {
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
  }
}

void DequantizeQ4_K(const BlockQ4_K* x, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = Fp16ToFp32(x[i].d);
    const float min = Fp16ToFp32(x[i].dmin);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < kQkK; j += 64) {
      Q4KScaleMin(x[i].scales, is + 0, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      Q4KScaleMin(x[i].scales, is + 1, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

int64_t BlocksOf(GgmlType t, int64_t n, const void* blocks) {
  const GgmlBlockLayout& l = GgmlLayout(t);
  if (l.block_elements > 1 && reinterpret_cast<uintptr_t>(blocks) % alignof(uint16_t) != 0) {
    throw std::invalid_argument(std::string(l.name) + " blocks must start at an even address (fp16 fields)");
  }
  if (n < 0 || n % l.block_elements != 0) {
    throw std::invalid_argument("a " + std::string(l.name) + " row needs a multiple of " +
                                std::to_string(l.block_elements) + " weights, got " + std::to_string(n));
  }
  return n / l.block_elements;
}

}  // namespace

int Q3KScale(const uint8_t scales[12], int s) {
  const int low = s < 8 ? (scales[s] & 0xF) : (scales[s - 8] >> 4);
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return low | (high << 4);
}

void Q4KScaleMin(const uint8_t scales[12], int s, uint8_t* scale, uint8_t* min) {
  if (s < 4) {
    *scale = scales[s] & 63;
    *min = scales[s + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((scales[s + 4] & 0xF) | ((scales[s - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
  }
}

void QuantizeRow(GgmlType t, const float* x, int64_t n, uint8_t* out) {
  const int64_t nb = BlocksOf(t, n, out);
  switch (t) {
    case GgmlType::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16:
      RowToFp16(x, n, out);
      return;
    case GgmlType::kQ4_0: return QuantizeQ4_0(x, nb, reinterpret_cast<BlockQ4_0*>(out));
    case GgmlType::kQ8_0: return QuantizeQ8_0(x, nb, reinterpret_cast<BlockQ8_0*>(out));
    case GgmlType::kQ2_K: return QuantizeQ2_K(x, nb, reinterpret_cast<BlockQ2_K*>(out));
    case GgmlType::kQ3_K: return QuantizeQ3_K(x, nb, reinterpret_cast<BlockQ3_K*>(out));
    case GgmlType::kQ4_K: return QuantizeQ4_K(x, nb, reinterpret_cast<BlockQ4_K*>(out));
  }
  throw std::invalid_argument("QuantizeRow: unknown ggml type " + std::to_string(static_cast<int>(t)));
}

void DequantizeRow(GgmlType t, const uint8_t* in, int64_t n, float* y) {
  const int64_t nb = BlocksOf(t, n, in);
  switch (t) {
    case GgmlType::kF32:
      std::memcpy(y, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        y[i] = Fp16ToFp32(h);
      }
      return;
    case GgmlType::kQ4_0: return DequantizeQ4_0(reinterpret_cast<const BlockQ4_0*>(in), nb, y);
    case GgmlType::kQ8_0: return DequantizeQ8_0(reinterpret_cast<const BlockQ8_0*>(in), nb, y);
    case GgmlType::kQ2_K: return DequantizeQ2_K(reinterpret_cast<const BlockQ2_K*>(in), nb, y);
    case GgmlType::kQ3_K: return DequantizeQ3_K(reinterpret_cast<const BlockQ3_K*>(in), nb, y);
    case GgmlType::kQ4_K: return DequantizeQ4_K(reinterpret_cast<const BlockQ4_K*>(in), nb, y);
  }
  throw std::invalid_argument("DequantizeRow: unknown ggml type " + std::to_string(static_cast<int>(t)));
}

std::vector<uint8_t> QuantizeRow(GgmlType t, std::span<const float> x) {
  std::vector<uint8_t> out(static_cast<size_t>(GgmlRowBytes(t, static_cast<int64_t>(x.size()))));
  QuantizeRow(t, x.data(), static_cast<int64_t>(x.size()), out.data());
  return out;
}

std::vector<float> DequantizeRow(GgmlType t, std::span<const uint8_t> bytes, int64_t n) {
  if (static_cast<int64_t>(bytes.size()) != GgmlRowBytes(t, n)) {
    throw std::invalid_argument("DequantizeRow: " + std::to_string(bytes.size()) + " bytes for " + std::to_string(n) +
                                " " + GgmlLayout(t).name + " weights, expected " + std::to_string(GgmlRowBytes(t, n)));
  }
  std::vector<float> y(static_cast<size_t>(n));
  DequantizeRow(t, bytes.data(), n, y.data());
  return y;
}

}  // namespace lifeline::measure
