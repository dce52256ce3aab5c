#pragma once
// Round trips of float32 values through narrower floating-point formats
// (fp16, bf16, fp8 E4M3 and E5M2), as a datatype conversion on save or load
// would do them: round to nearest, ties to even, gradual underflow to the
// format's subnormals, and values beyond the largest finite value saturated to
// it (a converter that clamps instead of producing inf or NaN).

#include <cstdint>
#include <string>
#include <vector>

namespace lifeline::recovery {

struct FloatFormat {
  std::string name;      // "fp16", "bf16", "fp8-e4m3", "fp8-e5m2"
  int exponent_bits = 0;
  int mantissa_bits = 0;  // stored fraction bits
  int bias = 0;           // exponent bias
  double max_finite = 0;  // largest finite magnitude
  double min_subnormal() const;  // 2^(1 - bias - mantissa_bits)
};

// The format named `name`; ConfigError naming `where` and the choices otherwise.
const FloatFormat& FindFloatFormat(const std::string& name, const std::string& where);
// The names FindFloatFormat accepts.
const std::vector<std::string>& FloatFormatNames();

// `x` rounded to `f` (NaN stays NaN; |x| above max_finite, inf included,
// becomes +-max_finite). Exact: every result is a float32 value.
float RoundToFormat(float x, const FloatFormat& f);

}  // namespace lifeline::recovery
