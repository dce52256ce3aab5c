#include "recovery/degrade/float_format.hpp"

#include <cfenv>
#include <cmath>

#include <fmt/format.h>

#include "common/error.hpp"

namespace lifeline::recovery {

double FloatFormat::min_subnormal() const { return std::ldexp(1.0, 1 - bias - mantissa_bits); }

const std::vector<std::string>& FloatFormatNames() {
  static const std::vector<std::string> names = {"fp16", "bf16", "fp8-e4m3", "fp8-e5m2"};
  return names;
}

const FloatFormat& FindFloatFormat(const std::string& name, const std::string& where) {
  // IEEE-style formats reserve the all-ones exponent for inf/NaN, so their
  // largest finite value is (2 - 2^-M) * 2^bias. E4M3 (OCP "fn" variant) has
  // no inf and keeps only mantissa 111 of the top exponent for NaN:
  // 1.75 * 2^8 = 448.
  static const std::vector<FloatFormat> formats = {
      {"fp16", 5, 10, 15, 65504.0},
      {"bf16", 8, 7, 127, (2.0 - std::ldexp(1.0, -7)) * std::ldexp(1.0, 127)},
      {"fp8-e4m3", 4, 3, 7, 448.0},
      {"fp8-e5m2", 5, 2, 15, 57344.0},
  };
  for (const auto& f : formats)
    if (f.name == name) return f;
  throw MakeConfigError(where, "dtype", fmt::format("unknown datatype '{}'", name),
                        fmt::format("one of: {}", fmt::join(FloatFormatNames(), ", ")), "");
}

float RoundToFormat(float x, const FloatFormat& f) {
  if (std::isnan(x)) return x;
  const double a = std::fabs(static_cast<double>(x));
  if (a == 0) return x;
  if (a >= f.max_finite) return std::copysign(static_cast<float>(f.max_finite), x);
  // The spacing of representable values at a's binade; below the smallest
  // normal binade it stays at the subnormal spacing.
  const int e = std::max(std::ilogb(a), 1 - f.bias);
  const double quantum = std::ldexp(1.0, e - f.mantissa_bits);
  // a / quantum is exact (a power of two); nearbyint rounds ties to even in
  // the default rounding mode.
  const int old_mode = std::fegetround();
  if (old_mode != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  double r = std::nearbyint(a / quantum) * quantum;
  if (old_mode != FE_TONEAREST) std::fesetround(old_mode);
  if (r > f.max_finite) r = f.max_finite;
  return std::copysign(static_cast<float>(r), x);
}

}  // namespace lifeline::recovery
