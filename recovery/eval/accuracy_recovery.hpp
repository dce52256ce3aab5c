#pragma once
// Accuracy recovery (AR%), METHOD.md §2 step 6, with the metric's direction:
//
//   higher is better (accuracy, top-1 agreement, mc2):
//     AR% = (E_rec - E_q) / |E_teacher - E_q| * 100
//   lower is better (perplexity, NLL, KL):
//     AR% = (E_q - E_rec) / |E_teacher - E_q| * 100
//
// 100% = the recovered model is back at the teacher, 0% = no better than the
// quantized model, negative = worse. Undefined (empty value plus a reason)
// when the quantized model is not worse than the teacher, since there is no
// gap to close, or when any input is not finite.

#include <optional>
#include <string>

namespace lifeline::recovery {

enum class MetricDirection {
  kHigherIsBetter,  // accuracy, acc_norm, top-1 agreement, mc1, mc2
  kLowerIsBetter,   // perplexity, NLL, KL
};

struct AccuracyRecovery {
  std::optional<double> ar_pct;  // AR in percent; empty when undefined
  std::string reason;            // why it is undefined (empty when defined)
};

AccuracyRecovery ComputeAccuracyRecovery(double teacher, double quantized, double recovered,
                                         MetricDirection direction);

// Direction from a metric name: names containing "ppl", "perplexity", "nll",
// "loss", "kl" or "bits_per_byte" are lower-is-better, everything else (acc, acc_norm, top1,
// mc1, mc2, exact_match) higher-is-better.
MetricDirection DirectionOfMetric(const std::string& metric);

}  // namespace lifeline::recovery
