// `lifeline probe`: measures the machine lifeline runs on and writes an
// hwspec YAML for it:
//  - memory_bandwidth_gb_per_s: N threads summing a >= 1 GiB array (read
//    only, as a decode reads its weights); a memcpy of the same size is
//    timed as a secondary number for the sources;
//  - int8_tops: the OpenBLAS cblas_sgemm fp32 rate on n x n matrices (no INT8
//    kernel is timed: the fp32 rate stands in for the device peak);
//  - with llama.cpp's driver in the build (lifeline-llama kernels, see
//    experiments/measure/kernel_probe.hpp): efficiency.linear_compute_<fmt>
//    (ggml's batch-1 matrix-vector rate per weight format over that peak) and
//    overhead.dispatch_s (ggml's per-operator cost on a thread pool).
// Every number written carries its measurement in `sources`.

#include <cblas.h>  // declarations only: the library is loaded with dlopen
#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "experiments/commands.hpp"
#include "experiments/measure/llama_runner.hpp"
#include "reports/table.hpp"
#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "roofline/spec/device_spec.hpp"

namespace lifeline::cli {
namespace {

constexpr int64_t kMiB = 1 << 20;

struct ProbeOptions {
  std::string write;
  std::string name = "this_machine";
  int64_t size_mb = 1024;        // MiB of the array read (and copied) per repetition
  int64_t matrix = 2048;         // n of the n x n x n sgemm
  int threads = 0;               // 0 = hardware concurrency
  int repeats = 5;               // repetitions of every timing; the best is kept
  std::string kernels = "auto";  // ggml kernel rates through lifeline-llama: auto, on, off
  int64_t kernel_mb = 256;       // MiB of weights streamed per timed ggml product
};

// Weight formats with a linear efficiency in the device spec
// (efficiency.linear_compute_<fmt>), as lifeline-llama kernels names them.
const char* const kLinearFormats[] = {"f32", "f16", "q8_0", "q4_0", "q4_k", "q3_k", "q2_k"};

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

// [begin, end) of thread t's share of n items.
std::pair<size_t, size_t> Share(size_t n, int threads, int t) {
  const size_t chunk = n / static_cast<size_t>(threads);
  const size_t b = chunk * static_cast<size_t>(t);
  return {b, t == threads - 1 ? n : b + chunk};
}

// Progress lines on a terminal only.
void Stage(const std::string& s) {
  if (StderrIsTty()) std::cerr << "probe: " << s << "\n";
}

// Best-of-N read bandwidth: each thread sums its share of a `bytes` array of
// 64-bit words (first touched by the same thread), four independent sums so
// the loads, not the adds, set the pace.
double ReadBandwidth(size_t bytes, int threads, int repeats) {
  const size_t n = bytes / sizeof(uint64_t) / 4 * 4;
  std::unique_ptr<uint64_t[]> a(new uint64_t[n]);
  Parallel(threads, [&](int t) {
    const auto [b, e] = Share(n, threads, t);
    for (size_t i = b; i < e; ++i) a[i] = i;
  });
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Parallel(threads, [&](int t) {
      auto [b, e] = Share(n / 4, threads, t);
      const uint64_t* __restrict p = a.get();
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = 4 * b; i < 4 * e; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
      }
      sums[static_cast<size_t>(t)] = s0 + s1 + s2 + s3;
    });
    best = std::min(best, Seconds(t0));
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  const uint64_t want = static_cast<uint64_t>(n) * (static_cast<uint64_t>(n) - 1) / 2;  // sum of 0..n-1
  if (total != want) throw InternalError("read-bandwidth check failed: the sum of the array is wrong");
  return static_cast<double>(n * sizeof(uint64_t)) / best;
}

// Best-of-N copy bandwidth, counting the bytes read plus the bytes written.
double CopyBandwidth(size_t bytes, int threads, int repeats) {
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  Parallel(threads, [&](int t) {
    const auto [b, e] = Share(bytes, threads, t);
    std::memset(src.get() + b, 1, e - b);
    std::memset(dst.get() + b, 2, e - b);
  });
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Parallel(threads, [&](int t) {
      const auto [b, e] = Share(bytes, threads, t);
      std::memcpy(dst.get() + b, src.get() + b, e - b);
    });
    best = std::min(best, Seconds(t0));
  }
  if (dst[bytes / 2] != 1) throw InternalError("copy check failed");
  return 2.0 * static_cast<double>(bytes) / best;
}

// OpenBLAS, loaded when the probe runs: linking it would start its thread
// pool and map its buffers in every lifeline command.
struct OpenBlas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&openblas_set_num_threads) set_num_threads = nullptr;
  decltype(&openblas_get_corename) get_corename = nullptr;
};

const OpenBlas& LoadOpenBlas() {
  static const OpenBlas blas = [] {
    void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      throw Error(fmt::format("lifeline probe times OpenBLAS's sgemm and cannot load libopenblas.so.0 ({}): install "
                              "libopenblas0-pthread (scripts/setup.sh does)",
                              dlerror()));
    }
    OpenBlas b;
    b.sgemm = reinterpret_cast<decltype(b.sgemm)>(dlsym(h, "cblas_sgemm"));
    b.set_num_threads = reinterpret_cast<decltype(b.set_num_threads)>(dlsym(h, "openblas_set_num_threads"));
    b.get_corename = reinterpret_cast<decltype(b.get_corename)>(dlsym(h, "openblas_get_corename"));
    if (!b.sgemm || !b.set_num_threads || !b.get_corename) {
      throw Error("libopenblas.so.0 lacks cblas_sgemm / openblas_set_num_threads / openblas_get_corename: is it "
                  "OpenBLAS? (install libopenblas0-pthread)");
    }
    return b;
  }();
  return blas;
}

// Best-of-N rate of OpenBLAS cblas_sgemm C = A B (n x n, fp32) on `threads`
// threads, 2 n^3 operations, after one untimed call; one element is checked
// against a plain dot product.
double SgemmRate(int64_t n, int threads, int repeats) {
  const OpenBlas& blas = LoadOpenBlas();
  blas.set_num_threads(threads);
  const size_t nn = static_cast<size_t>(n * n);
  std::vector<float> a(nn), b(nn), c(nn);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t i = 0; i < nn; ++i) {
    a[i] = u(rng);
    b[i] = u(rng);
  }
  const int ni = static_cast<int>(n);
  auto run = [&] {
    blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data(), ni, b.data(), ni, 0.0f, c.data(),
               ni);
  };
  run();
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, Seconds(t0));
  }
  double ref = 0, mag = 0;
  const size_t i = static_cast<size_t>(n / 3), j = static_cast<size_t>(n / 2), un = static_cast<size_t>(n);
  for (size_t k = 0; k < un; ++k) {
    ref += static_cast<double>(a[i * un + k]) * b[k * un + j];
    mag += std::abs(static_cast<double>(a[i * un + k]) * b[k * un + j]);
  }
  if (std::abs(ref - c[i * un + j]) > 1e-4 * std::max(1.0, mag))
    throw InternalError(fmt::format("cblas_sgemm disagrees with a plain dot product ({} vs {})", c[i * un + j], ref));
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

void Validate(const ProbeOptions& o, int hw) {
  const std::string w = "lifeline probe";
  const double mem_mib = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE)) /
                         static_cast<double>(kMiB);
  if (o.threads < 0 || o.threads > 4 * hw)
    throw MakeConfigError(w, "--threads", fmt::format("{} is out of range", o.threads),
                          fmt::format("0 (all {} hardware threads) or 1..{} (4x the hardware threads)", hw, 4 * hw),
                          "more threads than cores only adds contention to the measurement");
  if (o.repeats < 1 || o.repeats > 1000)
    throw MakeConfigError(w, "--repeats", fmt::format("{} is out of range", o.repeats), "1..1000 (the best is kept)");
  if (o.size_mb < 16 || static_cast<double>(o.size_mb) > mem_mib / 4)
    throw MakeConfigError(w, "--size-mb", fmt::format("{} is out of range", o.size_mb),
                          fmt::format("16..{} MiB: beyond the caches, and the copy's two arrays within half the "
                                      "memory",
                                      static_cast<int64_t>(mem_mib / 4)),
                          "the default, 1024, reads 1 GiB");
  if (o.matrix < 64 || o.matrix > 8192)
    throw MakeConfigError(w, "--matrix", fmt::format("{} is out of range", o.matrix), "64..8192 (n of n x n x n)");
  if (o.kernels != "auto" && o.kernels != "on" && o.kernels != "off")
    throw MakeConfigError(w, "--kernels", fmt::format("unknown value '{}'", o.kernels), "auto, on or off",
                          "auto measures the ggml kernels when lifeline-llama is in the build");
  if (o.kernel_mb < 1 || static_cast<double>(o.kernel_mb) > mem_mib / 4)
    throw MakeConfigError(w, "--kernel-mb", fmt::format("{} is out of range", o.kernel_mb),
                          fmt::format("1..{} MiB", static_cast<int64_t>(mem_mib / 4)),
                          "the default, 256, streams the weights from memory");
}

void RunProbe(const ProbeOptions& o) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Validate(o, hw);
  const int threads = o.threads > 0 ? o.threads : hw;
  const auto t_start = std::chrono::steady_clock::now();

  // Find the driver first, so `--kernels on` without one fails before minutes of timing.
  std::optional<std::filesystem::path> driver;
  if (o.kernels != "off") {
    driver = measure::FindLlamaDriver();
    if (!driver && o.kernels == "on")
      throw MakeConfigError("lifeline probe", "--kernels",
                            "'on' but llama.cpp's driver lifeline-llama is not in this build",
                            "a build configured after `scripts/setup.sh --with-llama-cpp`, or LIFELINE_LLAMA_DRIVER",
                            "--kernels auto skips the ggml kernels when the driver is missing");
  }

  const size_t bytes = static_cast<size_t>(o.size_mb) * kMiB;
  Stage(fmt::format("read bandwidth: {} MiB, {} threads", o.size_mb, threads));
  const double read_bw = ReadBandwidth(bytes, threads, o.repeats);
  Stage("memcpy bandwidth");
  const double copy_bw = CopyBandwidth(bytes, threads, o.repeats);
  Stage(fmt::format("OpenBLAS sgemm {}^3", o.matrix));
  const double sgemm = SgemmRate(o.matrix, threads, o.repeats);
  const std::string blas_core = LoadOpenBlas().get_corename();
  const double mem_bytes = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));

  nlohmann::json k;
  if (driver) {
    Stage(fmt::format("ggml kernels through {} ({} MiB of weights per format)", driver->string(), o.kernel_mb));
    k = measure::RunLlamaDriver({"kernels", "--threads", std::to_string(threads), "--reps", std::to_string(o.repeats),
                                 "--matrix-mb", std::to_string(o.kernel_mb)});
  }

  // ggml's threads spin at every node's barrier: with other processes on the
  // cores its rates collapse, so a busy run is reported as such.
  std::string busy;
  if (driver && k.value("other_cpu_share", 0.0) > 0.1) {
    busy = fmt::format(
        "; WARNING: other processes used {:.0f}% of the CPUs during the ggml timings, so these rates are "
        "too low: run the probe again on an idle machine",
        100 * k.at("other_cpu_share").get<double>());
    std::cerr << "probe: warning: other processes used "
              << fmt::format("{:.0f}", 100 * k.at("other_cpu_share").get<double>())
              << "% of the CPUs during the ggml kernel timings; their rates are not this machine's (rerun when idle)\n";
  }

  // The peak: the sgemm rate, or a ggml product's rate where one exceeds it,
  // so that every efficiency stays in (0, 1].
  double peak = sgemm;
  std::string peak_from;
  if (driver) {
    for (const auto& m : k.at("matvec")) {
      const double f = m.at("flops_per_s").get<double>();
      if (f > peak) {
        peak = f;
        peak_from = m.at("type").get<std::string>();
      }
    }
  }

  DeviceSpec d;
  d.name = o.name;
  d.description = fmt::format("this machine, measured by lifeline probe: {} ({} threads)", CpuModel(), threads);
  d.compute_ops_per_s = peak;
  d.memory_bandwidth_bytes_per_s = read_bw;
  d.memory_capacity_bytes = mem_bytes;
  d.memory_efficiency = 1;
  d.compute_efficiency = 1;
  d.attention_compute_efficiency = 1;
  d.moe_expert_compute_int2_efficiency = d.moe_expert_compute_int3_efficiency = 1;
  d.moe_expert_compute_int4_efficiency = d.moe_expert_compute_int8_efficiency = 1;
  const std::string measured = "measured by `lifeline probe`";
  d.sources["int8_tops"] = fmt::format(
      "{}: OpenBLAS cblas_sgemm, {}^3 fp32, {} threads (OpenBLAS core {}), best of {}: {:.4g} flop/s. No INT8 kernel "
      "is timed: the fp32 sgemm rate stands in for the device peak{}",
      measured, o.matrix, threads, blas_core, o.repeats, sgemm,
      peak_from.empty() ? std::string()
                        : fmt::format("; ggml's {} matrix-vector product measured faster ({:.4g} flop/s), so its rate "
                                      "is the peak instead and every efficiency stays <= 1",
                                      peak_from, peak));
  d.sources["memory_bandwidth_gb_per_s"] = fmt::format(
      "{}: {} threads summing a {} MiB array (read only, as a decode reads weights), best of {}: {:.4g} GB/s; "
      "secondary: memcpy of {} MiB {:.4g} GB/s counting bytes read + written",
      measured, threads, o.size_mb, o.repeats, read_bw / 1e9, o.size_mb, copy_bw / 1e9);
  d.sources["memory_capacity_gb"] = "sysconf(_SC_PHYS_PAGES) x page size";
  const std::string eff = "1: the measured rates already are achieved, not peak, rates (assumption for other kernels)";
  for (const char* key : {"efficiency.memory", "efficiency.compute", "efficiency.moe_expert_compute_int2",
                          "efficiency.moe_expert_compute_int4"})
    d.sources[key] = eff;
  d.sources["overhead.head_dispatch_s"] = "assumption: 0 (not measured)";

  reports::Table kt;
  if (driver) {
    const int kthreads = k.at("threads").get<int>();
    const int reps = k.at("reps").get<int>();
    for (const auto& m : k.at("matvec")) {
      const std::string fmt_name = m.at("type").get<std::string>();
      const double f = m.at("flops_per_s").get<double>();
      const double e = std::clamp(f / peak, 1e-9, 1.0);
      const std::string key = "efficiency.linear_compute_" + fmt_name;
      const std::string src =
          fmt::format(
              "measured by `lifeline probe` through lifeline-llama kernels: batch-1 ggml_mul_mat over {:.0f} MiB of {} "
              "weights ({} matrices of K={} x N={}, {} buffer), {} threads, best of {}: {:.4g} flop/s = {:.4g} "
              "weights/s "
              "= {:.4g} GB/s of weights streamed from memory (from cache: {:.4g} flop/s); / peak {:.4g} = {:.4g}",
              m.at("bytes_per_pass").get<double>() / kMiB, fmt_name, m.at("matrices").get<int64_t>(),
              m.at("k").get<int64_t>(), m.at("n").get<int64_t>(), m.at("buffer_type").get<std::string>(), kthreads,
              reps, f, m.at("weights_per_s").get<double>(), m.at("bytes_per_s").get<double>() / 1e9,
              m.at("hot").at("flops_per_s").get<double>(), peak, e) +
          busy;
      const std::optional<LinearFormat> lf = ParseLinearFormat(fmt_name);
      if (!lf) throw InternalError("lifeline-llama kernels measured an unknown weight format '" + fmt_name + "'");
      d.linear_compute_efficiency[static_cast<size_t>(*lf)] = e;
      d.sources[key] = src;
      kt.rows.push_back({fmt_name, m.at("buffer_type").get<std::string>(),
                         reports::Cell(m.at("bytes_per_s").get<double>() / 1e9, 2),
                         reports::Cell(m.at("weights_per_s").get<double>() / 1e9, 2), reports::Cell(f / 1e9, 2),
                         reports::Cell(m.at("hot").at("flops_per_s").get<double>() / 1e9, 2), reports::Cell(e, 4)});
    }
    d.dispatch_overhead_s = k.at("op_overhead_s").get<double>();
    d.sources["overhead.dispatch_s"] =
        fmt::format(
            "measured by `lifeline probe` through lifeline-llama kernels: a ggml graph of {} chained ggml_add of {} "
            "floats on a {}-thread ggml thread pool, best of {}: {:.4g} s per operator",
            k.at("op_overhead").at("ops").get<int>(), k.at("op_overhead").at("elements").get<int>(), kthreads, reps,
            d.dispatch_overhead_s) +
        busy;
    // Attention as llama.cpp runs it without flash attention (lifeline
    // measure's default): its rate over the peak is the efficiency of the
    // roofline's unfused attention operators (QK, softmax, PV; each charged
    // max(compute, memory)). The flash-attention kernel is recorded beside it.
    const auto& au = k.at("attention_unfused");
    const auto& af = k.at("attention");
    d.attention_compute_efficiency = std::min(1.0, au.at("flops_per_s").get<double>() / d.compute_ops_per_s);
    d.sources["efficiency.attention_compute"] = fmt::format(
        "measured by `lifeline probe` through lifeline-llama kernels: ggml mul_mat(K, q) + soft_max + "
        "mul_mat(V^T, p) of one query over {} f16 K/V rows, {} heads / {} KV heads of {} (llama.cpp's graph "
        "without flash attention): {:.4g} flop/s over the peak; with flash attention (ggml_flash_attn_ext) "
        "{:.4g} flop/s. Applies to unfused attention (fusion none); fused attention is charged compute + memory",
        au.at("context_tokens").get<int64_t>(), au.at("n_head").get<int64_t>(), au.at("n_head_kv").get<int64_t>(),
        au.at("head_dim").get<int64_t>(), au.at("flops_per_s").get<double>(), af.at("flops_per_s").get<double>()) +
        busy;
  } else {
    const std::string why =
        o.kernels == "off"
            ? "--kernels off"
            : "llama.cpp's driver lifeline-llama is not in this build (scripts/setup.sh --with-llama-cpp)";
    for (const char* f : kLinearFormats)
      d.sources[std::string("efficiency.linear_compute_") + f] =
          fmt::format("not measured ({}): left out, so the device loader's default applies", why);
    d.sources["overhead.dispatch_s"] = fmt::format("not measured ({}): 0", why);
    d.sources["efficiency.attention_compute"] = eff;
  }

  reports::Table t;
  t.title = fmt::format("Measured on this machine: {} ({} threads)", CpuModel(), threads);
  t.columns = {"quantity", "value", "how"};
  t.rows.push_back({"memory_bandwidth_gb_per_s", reports::Cell(read_bw / 1e9, 2),
                    fmt::format("{} threads summing {} MiB, best of {} (memcpy: {:.2f} GB/s read + write)", threads,
                                o.size_mb, o.repeats, copy_bw / 1e9)});
  t.rows.push_back({"int8_tops", reports::Cell(peak / 1e12, 4),
                    peak_from.empty()
                        ? fmt::format("OpenBLAS sgemm {}^3 fp32 ({}), best of {}", o.matrix, blas_core, o.repeats)
                        : fmt::format("ggml {} matvec (faster than sgemm's {:.4g} TFLOP/s)", peak_from, sgemm / 1e12)});
  t.rows.push_back({"memory_capacity_gb", reports::Cell(mem_bytes / 1e9, 2), "physical pages x page size"});
  if (driver) {
    t.rows.push_back({"overhead.dispatch_s", reports::Cell(d.dispatch_overhead_s * 1e6, 3),
                      "ggml per-operator overhead, in microseconds"});
  } else {
    t.notes.push_back(o.kernels == "off"
                          ? "ggml kernels not measured (--kernels off)"
                          : "ggml kernels not measured: lifeline-llama (llama.cpp) is not in this build");
  }
  std::cout << reports::ToText(t);
  if (driver) {
    kt.title = "ggml batch-1 matrix-vector products (weights streamed from memory)";
    kt.columns = {"format", "buffer", "GB/s", "Gweights/s", "GFLOP/s", "GFLOP/s (cached)", "efficiency"};
    std::cout << "\n" << reports::ToText(kt);
  }

  const std::string yaml = DeviceSpecToYaml(d);
  (void)ParseDeviceSpec(LoadYamlString(yaml, "probe output"), "probe output");  // what we write parses as a device
  if (!o.write.empty()) {
    reports::WriteFileAtomic(o.write, yaml, "--write");
    (void)LoadDeviceSpec(o.write);
    std::cout << "wrote " << o.write << "\n";
  }
  std::cout << fmt::format("probe took {:.1f} s\n", Seconds(t_start));
}

}  // namespace

void AddProbeCommand(CLI::App& app) {
  auto o = std::make_shared<ProbeOptions>();
  CLI::App* sub = app.add_subcommand(
      "probe",
      "Measure this machine (read bandwidth, OpenBLAS fp32 sgemm rate, and with llama.cpp in the build ggml's "
      "per-format matrix-vector rates and per-operator overhead) and write an hwspec YAML.");
  sub->add_option("--write", o->write, "write the device YAML here (e.g. hwspec/this_machine.yaml)");
  sub->add_option("--name", o->name, "device name in the YAML")->capture_default_str();
  sub->add_option("--size-mb", o->size_mb, "MiB of the array read (and copied) per repetition")->capture_default_str();
  sub->add_option("--matrix", o->matrix, "n of the n x n x n fp32 sgemm")->capture_default_str();
  sub->add_option("--threads", o->threads, "threads (0 = all hardware threads)")->capture_default_str();
  sub->add_option("--repeats", o->repeats, "repetitions of every timing (best is kept)")->capture_default_str();
  sub->add_option("--kernels", o->kernels,
                  "ggml kernel rates through lifeline-llama: auto (when it is in the build), on, off")
      ->capture_default_str();
  sub->add_option("--kernel-mb", o->kernel_mb, "MiB of weights streamed per timed ggml product")->capture_default_str();
  sub->callback([o] { RunProbe(*o); });
}

}  // namespace lifeline::cli
