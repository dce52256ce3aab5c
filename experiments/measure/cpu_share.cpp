#include "experiments/measure/cpu_share.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace lifeline::measure {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

CpuSample SampleCpu() {
  CpuSample s;
  s.wall_s = NowSeconds();
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.busy_s = static_cast<double>(user + nice + system + irq + softirq) / hz;
  s.steal_s = static_cast<double>(steal) / hz;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  return s;
}

CpuShares SharesBetween(const CpuSample& a, const CpuSample& b) {
  const double cpus = static_cast<double>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  const double all = std::max(1e-9, b.wall_s - a.wall_s) * cpus;
  const double self = b.self_s - a.self_s;
  CpuShares s;
  s.other = std::clamp(((b.busy_s - a.busy_s) - self) / all, 0.0, 1.0);
  s.steal = std::clamp((b.steal_s - a.steal_s) / all, 0.0, 1.0);
  s.self = std::clamp(self / all, 0.0, 1.0);
  return s;
}

}  // namespace lifeline::measure
