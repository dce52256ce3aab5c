#include "roofline/eval/evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <tuple>

namespace lifeline {
namespace {

// Efficiency slots: which device efficiency and which peak divide an op's
// operations. Base slots: 0 general compute, 1 attention, then one per linear
// weight format, then one per MoE expert-unpack bit width (0..8); each base
// slot once per compute datatype (slot = base + kSlotBaseCount * dtype).
constexpr int kSlotGeneral = 0;
constexpr int kSlotAttention = 1;
constexpr int kSlotLinear = 2;
constexpr int kSlotUnpack = kSlotLinear + kLinearFormatCount;
constexpr int kSlotBaseCount = kSlotUnpack + 9;
constexpr int kSlotCount = kSlotBaseCount * kComputeDtypeCount;

int WithDtype(int base, ComputeDtype t) { return base + kSlotBaseCount * static_cast<int>(t); }
ComputeDtype SlotDtype(int slot) { return static_cast<ComputeDtype>(slot / kSlotBaseCount); }

int ComputeSlot(const OpNode& n) {
  const ComputeDtype t = ComputeDtypeOf(n);
  if (n.compute_class == ComputeClass::kAttention) return WithDtype(kSlotAttention, t);
  if (n.linear_format) return WithDtype(kSlotLinear + static_cast<int>(*n.linear_format), t);
  return WithDtype(kSlotGeneral, t);
}
// Unpacking low-bit expert weights is integer work: the INT8 peak.
int UnpackSlot(const OpNode& n) {
  return WithDtype(kSlotUnpack + std::clamp(n.expert_unpack_bits, 0, 8), ComputeDtype::kInt8);
}

double SlotEfficiency(const DeviceSpec& d, int slot) {
  slot %= kSlotBaseCount;
  if (slot == kSlotGeneral) return d.compute_efficiency;
  if (slot == kSlotAttention) return d.attention_compute_efficiency;
  if (slot < kSlotUnpack) return d.LinearComputeEfficiency(static_cast<LinearFormat>(slot - kSlotLinear));
  return d.MoeExpertEfficiency(slot - kSlotUnpack);
}

// Seconds per operation for a slot: efficiency x the peak of its datatype
// (throws ConfigError when the device lists peaks but not that datatype's).
double InvRate(const DeviceSpec& d, int slot) {
  return 1.0 / (SlotEfficiency(d, slot) * d.PeakOpsPerS(SlotDtype(slot)));
}

struct Rates {
  double inv_compute[kSlotCount];  // s per op, by efficiency slot; NaN: the device has no peak for it
  double inv_memory;               // s per byte
  double dispatch_s;
  double head_dispatch_s;
};

Rates RatesOf(const DeviceSpec& d) {
  Rates r{};
  for (int s = 0; s < kSlotCount; ++s) {
    r.inv_compute[s] = d.HasPeak(SlotDtype(s)) ? InvRate(d, s) : std::numeric_limits<double>::quiet_NaN();
  }
  r.inv_memory = 1.0 / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  r.dispatch_s = d.dispatch_overhead_s;
  r.head_dispatch_s = d.head_dispatch_overhead_s;
  return r;
}

double AttendedContext(const ModelGraph& g, const OpNode& n, int64_t ctx) {
  if (g.options.phase != Phase::kDecode) return 0.0;
  return static_cast<double>(n.context_cap > 0 ? std::min(ctx, n.context_cap) : ctx);
}

}  // namespace

ComputeDtype ComputeDtypeOf(const OpNode& n) {
  if (n.compute_class == ComputeClass::kAttention) return ComputeDtype::kBf16;
  if (!n.linear_format) return ComputeDtype::kFp32;
  switch (*n.linear_format) {
    case LinearFormat::kF32: return ComputeDtype::kFp32;
    case LinearFormat::kF16: return ComputeDtype::kFp16;
    case LinearFormat::kBf16:
    case LinearFormat::kInt2:
    case LinearFormat::kInt3:
    case LinearFormat::kInt4:
    case LinearFormat::kInt8: return ComputeDtype::kBf16;  // WbA16: dequantised to BF16
    case LinearFormat::kQ8_0:
    case LinearFormat::kQ4_0:
    case LinearFormat::kQ4_K:
    case LinearFormat::kQ3_K:
    case LinearFormat::kQ2_K: return ComputeDtype::kInt8;  // activations quantised to Q8, integer dot products
  }
  return ComputeDtype::kFp32;
}

StepResult EvaluateStep(const ModelGraph& g, const DeviceSpec& d, int64_t context_tokens) {
  const Rates r = RatesOf(d);
  StepResult res;
  res.ops.reserve(g.order.size());
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    const double c = AttendedContext(g, n, context_tokens);
    OpTiming t;
    const double class_flops = n.flops + n.flops_per_ctx * c;
    t.flops = class_flops + n.expert_unpack_ops;
    t.weight_bytes = n.weight_bytes + n.weight_meta_bytes;
    t.act_bytes = n.act_read_bytes + n.act_write_bytes + (n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx) * c;
    t.kv_bytes = n.kv_read_bytes + n.kv_read_bytes_per_ctx * c + n.kv_write_bytes;
    // A datatype the device has no peak for: InvRate says which key is missing.
    auto inv = [&](int slot) { return std::isnan(r.inv_compute[slot]) ? InvRate(d, slot) : r.inv_compute[slot]; };
    t.compute_s = class_flops * inv(ComputeSlot(n)) + n.expert_unpack_ops * inv(UnpackSlot(n));
    t.memory_s = (t.weight_bytes + t.act_bytes + t.kv_bytes) * r.inv_memory;
    t.overhead_s = n.dispatches * r.dispatch_s + n.head_dispatches * r.head_dispatch_s;
    t.compute_bound = t.compute_s > t.memory_s;
    t.total_s = (n.charge == Charge::kSum ? t.compute_s + t.memory_s : std::max(t.compute_s, t.memory_s)) +
                t.overhead_s;
    res.compute_s += t.compute_s;
    res.memory_s += t.memory_s;
    res.overhead_s += t.overhead_s;
    res.total_s += t.total_s;
    res.ops.push_back(t);
  }
  if (g.options.phase == Phase::kPrefill) {
    // LIFE: TTFT = max(sum of compute, sum of memory) over prefill.
    res.total_s = std::max(res.compute_s, res.memory_s) + res.overhead_s;
  }
  return res;
}

DecodeMetrics DecodeFromStep(double step_s, int64_t batch) {
  DecodeMetrics m;
  m.tpot_s = step_s;
  m.tps = step_s > 0 ? 1.0 / step_s : 0.0;
  m.batch_tokens_per_s = m.tps * static_cast<double>(batch);
  return m;
}

CompiledGraph::CompiledGraph(const ModelGraph& g) : phase_(g.options.phase), batch_(g.options.batch) {
  // Identical ops merge: same work, traffic, dispatches, context cap, charge
  // and efficiency slots (compute class or linear weight format, unpack bits).
  using Key = std::tuple<double, double, double, double, double, double, double, int64_t, int, bool, int>;
  std::map<Key, size_t> index;
  int local_of[kSlotCount];
  std::fill(std::begin(local_of), std::end(local_of), -1);
  auto local = [&](int slot) {
    if (local_of[slot] < 0) {
      local_of[slot] = static_cast<int>(slots_.size());
      slots_.push_back(slot);
    }
    return local_of[slot];
  };
  for (auto v : g.order) {
    const OpNode& n = g.graph[v];
    Term t{};
    t.flops = n.flops;
    t.flops_per_ctx = n.flops_per_ctx;
    t.unpack_ops = n.expert_unpack_ops;
    t.bytes = n.weight_bytes + n.weight_meta_bytes + n.act_read_bytes + n.act_write_bytes + n.kv_read_bytes +
              n.kv_write_bytes;
    t.bytes_per_ctx = n.act_read_bytes_per_ctx + n.act_write_bytes_per_ctx + n.kv_read_bytes_per_ctx;
    t.dispatches = n.dispatches;
    t.head_dispatches = n.head_dispatches;
    t.cap = n.context_cap;
    t.sum_charge = n.charge == Charge::kSum;
    const int compute_slot = ComputeSlot(n);
    // Without unpacking ops the unpack rate multiplies zero: reuse the compute
    // slot rather than evaluate a rate nobody needs.
    const int unpack_slot = t.unpack_ops != 0 ? UnpackSlot(n) : compute_slot;
    const Key key{t.flops, t.flops_per_ctx, t.unpack_ops, t.bytes, t.bytes_per_ctx, t.dispatches,
                  t.head_dispatches, t.cap, compute_slot, t.sum_charge, unpack_slot};
    auto it = index.find(key);
    if (it == index.end()) {
      t.count = 1;
      t.compute_rate = local(compute_slot);
      t.unpack_rate = local(unpack_slot);
      index.emplace(key, terms_.size());
      terms_.push_back(t);
    } else {
      terms_[it->second].count += 1;
    }
  }
}

void CompiledGraph::SlotSecondsPerOp(const DeviceSpec& d, std::vector<double>& out) const {
  out.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) out[i] = InvRate(d, slots_[i]);
}

double CompiledGraph::StepSeconds(const DeviceSpec& d, int64_t context_tokens) const {
  // Seconds per op for the efficiency slots this graph uses only (a handful).
  double inv[kSlotCount];
  for (size_t i = 0; i < slots_.size(); ++i) inv[i] = InvRate(d, slots_[i]);
  const double inv_memory = 1.0 / (d.memory_efficiency * d.memory_bandwidth_bytes_per_s);
  const double dispatch_s = d.dispatch_overhead_s, head_dispatch_s = d.head_dispatch_overhead_s;
  const double ctx = static_cast<double>(context_tokens);
  if (phase_ == Phase::kDecode) {
    double total = 0;
    for (const Term& t : terms_) {
      const double c = t.cap > 0 && t.cap < context_tokens ? static_cast<double>(t.cap) : ctx;
      const double tc = (t.flops + t.flops_per_ctx * c) * inv[t.compute_rate] + t.unpack_ops * inv[t.unpack_rate];
      const double tm = (t.bytes + t.bytes_per_ctx * c) * inv_memory;
      const double op = (t.sum_charge ? tc + tm : (tc > tm ? tc : tm)) + t.dispatches * dispatch_s +
                        t.head_dispatches * head_dispatch_s;
      total += t.count * op;
    }
    return total;
  }
  double tc_sum = 0, tm_sum = 0, ov = 0;
  for (const Term& t : terms_) {
    tc_sum += t.count * (t.flops * inv[t.compute_rate] + t.unpack_ops * inv[t.unpack_rate]);
    tm_sum += t.count * t.bytes * inv_memory;
    ov += t.count * (t.dispatches * dispatch_s + t.head_dispatches * head_dispatch_s);
  }
  return std::max(tc_sum, tm_sum) + ov;
}

}  // namespace lifeline
