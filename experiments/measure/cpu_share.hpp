#pragma once
// How much of the machine other processes took while something was timed:
// CPU time of all CPUs (/proc/stat) against this process's own (getrusage),
// and the hypervisor's steal. Used around every timed repetition of
// lifeline-llama, so a measurement on a busy machine is not taken as clean.

namespace lifeline::measure {

// Monotonic seconds.
double NowSeconds();

struct CpuSample {
  double wall_s = 0;   // monotonic clock
  double busy_s = 0;   // all CPUs: user + nice + system + irq + softirq
  double steal_s = 0;  // time the hypervisor gave to other guests
  double self_s = 0;   // this process, all threads
};
CpuSample SampleCpu();

// Shares of all CPUs' time between two samples, each clamped to [0, 1].
// /proc/stat counts in clock ticks (10 ms): over a span of T seconds a share
// is only known to about 0.01 / T, so only repetitions of a second or more
// (every real measurement) are judged finely.
struct CpuShares {
  double other = 0;  // other processes
  double steal = 0;  // hypervisor steal
  double self = 0;   // this process
};
CpuShares SharesBetween(const CpuSample& a, const CpuSample& b);

}  // namespace lifeline::measure
