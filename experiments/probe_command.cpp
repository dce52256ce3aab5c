// `lifeline probe`: measures the machine lifeline runs on (memory copy
// bandwidth, float matrix-product rate) and writes an hwspec YAML for it.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "experiments/commands.hpp"
#include "reports/table.hpp"
#include "roofline/common/error.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline::cli {
namespace {

struct ProbeOptions {
  std::string write;
  std::string name = "this_machine";
  int64_t size_mb = 256;
  int64_t matrix = 1024;
  int threads = 0;  // 0 = hardware concurrency
  int repeats = 5;
};

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

template <typename F>
void Parallel(int threads, F&& f) {
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back(f, t);
  f(0);
  for (auto& t : ts) t.join();
}

// Best-of-N copy bandwidth, counting the bytes read plus the bytes written.
double CopyBandwidth(size_t bytes, int threads, int repeats) {
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  std::memset(src.get(), 1, bytes);
  std::memset(dst.get(), 2, bytes);
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Parallel(threads, [&](int t) {
      const size_t chunk = bytes / static_cast<size_t>(threads);
      const size_t off = chunk * static_cast<size_t>(t);
      const size_t n = t == threads - 1 ? bytes - off : chunk;
      std::memcpy(dst.get() + off, src.get() + off, n);
    });
    best = std::min(best, Seconds(t0));
  }
  if (dst[bytes / 2] != 1) throw InternalError("copy check failed");
  return 2.0 * static_cast<double>(bytes) / best;
}

// Best-of-N rate of a cache-blocked float matrix product C = A B (n x n),
// 2 n^3 operations (one multiply + one add per term).
double MatmulRate(int64_t n, int threads, int repeats, double* checksum) {
  const size_t nn = static_cast<size_t>(n * n);
  std::vector<float> a(nn), b(nn), c(nn);
  for (size_t i = 0; i < nn; ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  constexpr int64_t kB = 64;
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    std::fill(c.begin(), c.end(), 0.0f);
    const auto t0 = std::chrono::steady_clock::now();
    const float* __restrict pa = a.data();
    const float* __restrict pb = b.data();
    float* __restrict pc = c.data();
    Parallel(threads, [=](int t) {
      for (int64_t ii = t * kB; ii < n; ii += kB * threads) {
        const int64_t ie = std::min(ii + kB, n);
        for (int64_t kk = 0; kk < n; kk += kB) {
          const int64_t ke = std::min(kk + kB, n);
          for (int64_t jj = 0; jj < n; jj += kB) {
            const int64_t je = std::min(jj + kB, n);
            for (int64_t i = ii; i < ie; ++i) {
              float* __restrict cr = pc + i * n;
              for (int64_t k = kk; k < ke; ++k) {
                const float av = pa[i * n + k];
                const float* __restrict br = pb + k * n;
                for (int64_t j = jj; j < je; ++j) cr[j] += av * br[j];
              }
            }
          }
        }
      }
    });
    best = std::min(best, Seconds(t0));
  }
  // Reference check of one element against a plain dot product.
  double ref = 0;
  for (int64_t k = 0; k < n; ++k) ref += static_cast<double>(a[static_cast<size_t>(3 * n + k)]) * b[static_cast<size_t>(k * n + 5)];
  if (std::abs(ref - c[static_cast<size_t>(3 * n + 5)]) > 1e-3 * std::max(1.0, std::abs(ref)))
    throw InternalError("blocked matrix product disagrees with the reference");
  *checksum = c[static_cast<size_t>(3 * n + 5)];
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) return line.substr(c + 2);
    }
  }
  return "unknown CPU";
}

void RunProbe(const ProbeOptions& o) {
  if (o.size_mb < 16) throw MakeConfigError("--size-mb", std::to_string(o.size_mb), "too small", ">= 16 MB (beyond the caches)", "");
  if (o.matrix < 64) throw MakeConfigError("--matrix", std::to_string(o.matrix), "too small", ">= 64", "");
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  const size_t bytes = static_cast<size_t>(o.size_mb) * 1000000;
  const double bw = CopyBandwidth(bytes, threads, o.repeats);
  double checksum = 0;
  const double ops = MatmulRate(o.matrix, threads, std::max(1, o.repeats / 2), &checksum);
  const double mem_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));

  reports::Table t;
  t.title = fmt::format("Measured on this machine: {} ({} threads)", CpuModel(), threads);
  t.columns = {"quantity", "value", "how"};
  t.rows.push_back({"memory_bandwidth_gb_per_s", reports::Cell(bw / 1e9, 2),
                    fmt::format("memcpy of {} MB, best of {}, read + write bytes", o.size_mb, o.repeats)});
  t.rows.push_back({"int8_tops (fp32 matrix product rate)", reports::Cell(ops / 1e12, 4),
                    fmt::format("blocked {}x{} float matmul, 2 n^3 ops, best of {}", o.matrix, o.matrix,
                                std::max(1, o.repeats / 2))});
  t.rows.push_back({"memory_capacity_gb", reports::Cell(mem_bytes / 1e9, 2), "physical pages x page size"});
  std::cout << reports::ToText(t);

  DeviceSpec d;
  d.name = o.name;
  d.description = fmt::format("this machine, measured by lifeline probe: {} ({} threads)", CpuModel(), threads);
  d.compute_ops_per_s = ops;
  d.memory_bandwidth_bytes_per_s = bw;
  d.memory_capacity_bytes = mem_bytes;
  d.memory_efficiency = 1;
  d.compute_efficiency = 1;
  d.attention_compute_efficiency = 1;
  d.moe_expert_compute_int2_efficiency = d.moe_expert_compute_int3_efficiency = 1;
  d.moe_expert_compute_int4_efficiency = d.moe_expert_compute_int8_efficiency = 1;
  const std::string measured = "measured by `lifeline probe`";
  d.sources["int8_tops"] = fmt::format("{}: blocked {}x{} fp32 matrix product on {} threads ({:.4g} ops/s); "
                                       "no INT8 kernel is timed, the fp32 rate stands in for it",
                                       measured, o.matrix, o.matrix, threads, ops);
  d.sources["memory_bandwidth_gb_per_s"] =
      fmt::format("{}: memcpy of {} MB on {} threads, best of {}, bytes read + written", measured, o.size_mb, threads,
                  o.repeats);
  d.sources["memory_capacity_gb"] = "sysconf(_SC_PHYS_PAGES) x page size";
  const std::string eff = "1: the measured rates already are achieved, not peak, rates (assumption for other kernels)";
  for (const char* k : {"efficiency.memory", "efficiency.compute", "efficiency.attention_compute",
                        "efficiency.moe_expert_compute_int2", "efficiency.moe_expert_compute_int4"})
    d.sources[k] = eff;
  d.sources["overhead.dispatch_s"] = "assumption: 0 (not measured)";
  d.sources["overhead.head_dispatch_s"] = "assumption: 0 (not measured)";
  if (!o.write.empty()) {
    reports::WriteFileAtomic(o.write, DeviceSpecToYaml(d));
    (void)LoadDeviceSpec(o.write);  // what we wrote parses as a device
    std::cout << "wrote " << o.write << "\n";
  }
}

}  // namespace

void AddProbeCommand(CLI::App& app) {
  auto o = std::make_shared<ProbeOptions>();
  CLI::App* sub = app.add_subcommand(
      "probe", "Measure this machine (memory copy bandwidth, float matrix-product rate) and write an hwspec YAML.");
  sub->add_option("--write", o->write, "write the device YAML here (e.g. hwspec/this_machine.yaml)");
  sub->add_option("--name", o->name, "device name in the YAML")->capture_default_str();
  sub->add_option("--size-mb", o->size_mb, "bytes copied per repetition, in MB")->capture_default_str();
  sub->add_option("--matrix", o->matrix, "matrix size n of the n x n product")->capture_default_str();
  sub->add_option("--threads", o->threads, "threads (0 = all hardware threads)")->capture_default_str();
  sub->add_option("--repeats", o->repeats, "repetitions (best is kept)")->capture_default_str();
  sub->callback([o] { RunProbe(*o); });
}

}  // namespace lifeline::cli
