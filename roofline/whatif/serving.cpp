#include "roofline/whatif/serving.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "common/error.hpp"

namespace lifeline::whatif {
namespace {

BuildOptions WithBatch(BuildOptions o, int64_t batch) {
  o.batch = batch;
  return o;
}

std::string LayoutName(const ParallelConfig& c) {
  return fmt::format("tp {} pp {} ep {}", c.tp, c.pp, c.ep);
}

bool Fits(const Setting& s, const SystemSpec& system, const ParallelConfig& layout, int64_t batch,
          int64_t context) {
  const ParallelModel m(s.arch, s.plan, WithBatch(s.decode, batch), system, layout);
  return m.Fits(context);
}

}  // namespace

int64_t CapacityContext(const Setting& s, int64_t output_tokens) {
  return output_tokens > 0 ? std::max(s.context, s.prompt + output_tokens) : s.context;
}

ServingPoint EvaluateServing(const Setting& s, const SystemSpec& system, const ParallelConfig& layout, int64_t batch,
                             int64_t output_tokens) {
  ServingPoint p;
  p.batch = batch;
  p.output_tokens = output_tokens;
  const ParallelModel decode(s.arch, s.plan, WithBatch(s.decode, batch), system, layout);
  const ParallelModel prefill(s.arch, s.plan, WithBatch(s.prefill, batch), system, layout);
  p.layout = layout;
  p.layout.micro_batches = decode.micro_batches();
  p.decode = decode.Evaluate(s.context);
  p.prefill = prefill.Evaluate(s.prompt);
  p.tpot_s = p.decode.step_s;
  p.tps_per_sequence = 1.0 / p.tpot_s;
  p.tokens_per_s = p.decode.tokens_per_s;
  p.ttft_s = p.prefill.step_s;
  if (output_tokens > 0) {
    p.request_latency_s = p.ttft_s;
    for (int64_t j = 1; j < output_tokens; ++j) p.request_latency_s += decode.Evaluate(s.prompt + j).step_s;
  }
  p.capacity_context = CapacityContext(s, output_tokens);
  p.footprint = decode.DeviceFootprint(p.capacity_context);
  p.prefill_footprint = prefill.DeviceFootprint(s.prompt);
  if (!FitsDevice(p.footprint, system.device)) {
    p.fits = false;
    p.why_not_fits = "decode " + DescribeFootprint(p.footprint, system.device);
  } else if (!FitsDevice(p.prefill_footprint, system.device)) {
    p.fits = false;
    p.why_not_fits = "prefill " + DescribeFootprint(p.prefill_footprint, system.device);
  }
  return p;
}

int64_t LargestBatch(const Setting& s, const SystemSpec& system, const ParallelConfig& given,
                     int64_t context_tokens) {
  ParallelConfig layout = given;
  layout.micro_batches = 0;  // each batch with its automatic micro-batch count
  const int64_t step = layout.ep;
  if (!Fits(s, system, layout, step, context_tokens)) return 0;
  // Doubling to a batch that does not fit, then bisection on multiples of ep.
  int64_t lo = 1, hi = 0;  // in units of ep
  while (true) {
    const int64_t next = lo * 2;
    if (next * step > kMaxBatch) break;
    if (!Fits(s, system, layout, next * step, context_tokens)) {
      hi = next;
      break;
    }
    lo = next;
  }
  if (hi == 0) {
    // Every doubling fit: try the limit itself.
    const int64_t top = kMaxBatch / step;
    if (Fits(s, system, layout, top * step, context_tokens)) return top * step;
    hi = top;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (Fits(s, system, layout, mid * step, context_tokens)) lo = mid;
    else hi = mid;
  }
  return lo * step;
}

BestResult SearchBest(const Setting& s, const SystemSpec& system, const BestOptions& options) {
  BestResult r;
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= system.count; ++d) {
    if (system.count % d == 0) divisors.push_back(d);
  }
  const int64_t capacity_context = CapacityContext(s, options.output_tokens);
  std::vector<BestCandidate> ok, lost;
  for (int64_t tp : divisors) {
    for (int64_t pp : divisors) {
      for (int64_t ep : divisors) {
        if (tp * pp * ep > system.count) continue;
        if (ep > 1 && !s.arch.IsMoe()) continue;
        const ParallelConfig layout{tp, pp, ep, 0};
        try {
          (void)CheckParallelConfig(s.arch, layout, ep, system, s.decode.fidelity);
        } catch (const ConfigError& e) {
          r.invalid_layouts.push_back(LayoutName(layout) + ": " + e.what());
          continue;
        }
        ++r.layouts_tried;
        const int64_t largest = LargestBatch(s, system, layout, capacity_context);
        std::vector<int64_t> batches;
        for (int64_t b = ep; b <= std::min(options.max_batch, kMaxBatch); b *= 2) {
          batches.push_back(b);
          if (b > largest) break;  // the first batch that does not fit shows why
        }
        if (largest > 0 && largest <= options.max_batch &&
            std::find(batches.begin(), batches.end(), largest) == batches.end())
          batches.push_back(largest);
        std::sort(batches.begin(), batches.end());
        for (int64_t b : batches) {
          BestCandidate c;
          c.point = EvaluateServing(s, system, layout, b, options.output_tokens);
          if (!c.point.fits) {
            c.verdict = "does not fit: " + c.point.why_not_fits;
          } else if (c.point.tpot_s > options.max_tpot_s) {
            c.verdict = fmt::format("TPOT {:.4g} s over the limit {:.4g} s", c.point.tpot_s, options.max_tpot_s);
          } else if (c.point.ttft_s > options.max_ttft_s) {
            c.verdict = fmt::format("TTFT {:.4g} s over the limit {:.4g} s", c.point.ttft_s, options.max_ttft_s);
          } else {
            c.ok = true;
            c.verdict = "meets the limits";
          }
          (c.ok ? ok : lost).push_back(std::move(c));
        }
      }
    }
  }
  auto better = [](const BestCandidate& a, const BestCandidate& b) {
    return std::make_tuple(-a.point.tokens_per_s, a.point.layout.Devices(), a.point.tpot_s) <
           std::make_tuple(-b.point.tokens_per_s, b.point.layout.Devices(), b.point.tpot_s);
  };
  std::stable_sort(ok.begin(), ok.end(), better);
  std::stable_sort(lost.begin(), lost.end(), better);
  if (!ok.empty()) {
    ok.front().verdict = "winner";
    for (size_t i = 1; i < ok.size(); ++i) {
      ok[i].verdict = fmt::format("meets the limits; {:.4g} tokens/s below the winner's {:.4g}",
                                  ok[i].point.tokens_per_s, ok.front().point.tokens_per_s);
    }
  }
  r.candidates = std::move(ok);
  for (auto& c : lost) r.candidates.push_back(std::move(c));
  return r;
}

}  // namespace lifeline::whatif
