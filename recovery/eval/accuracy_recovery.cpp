#include "recovery/eval/accuracy_recovery.hpp"

#include <cmath>

#include <fmt/format.h>

namespace lifeline::recovery {

AccuracyRecovery ComputeAccuracyRecovery(double teacher, double quantized, double recovered,
                                         MetricDirection direction) {
  AccuracyRecovery r;
  if (!std::isfinite(teacher) || !std::isfinite(quantized) || !std::isfinite(recovered)) {
    r.reason = fmt::format("a value is not finite (teacher {}, quantized {}, recovered {})",
                           teacher, quantized, recovered);
    return r;
  }
  const bool higher = direction == MetricDirection::kHigherIsBetter;
  const bool quantized_worse = higher ? quantized < teacher : quantized > teacher;
  if (!quantized_worse) {
    r.reason = fmt::format("undefined: the quantized model ({}) is not worse than the teacher ({}) "
                           "on this {}-is-better metric, so there is no gap to recover",
                           quantized, teacher, higher ? "higher" : "lower");
    return r;
  }
  const double gain = higher ? recovered - quantized : quantized - recovered;
  r.ar_pct = gain / std::fabs(teacher - quantized) * 100.0;
  return r;
}

MetricDirection DirectionOfMetric(const std::string& metric) {
  std::string m;
  for (char c : metric) m.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (const char* key : {"ppl", "perplexity", "nll", "loss", "kl", "bits_per_byte"})
    if (m.find(key) != std::string::npos) return MetricDirection::kLowerIsBetter;
  return MetricDirection::kHigherIsBetter;
}

}  // namespace lifeline::recovery
