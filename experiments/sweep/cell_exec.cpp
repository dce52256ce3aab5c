#include "experiments/sweep/cell_exec.hpp"

#include <fmt/format.h>

#include <chrono>

#include "experiments/sweep/sha256.hpp"
#include "common/error.hpp"
#include "common/paths.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/footprint.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::sweep {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ThroughputEvaluator::Impl {
  struct GraphEntry {
    std::once_flag once;
    std::unique_ptr<ModelGraph> graph;
    std::unique_ptr<CompiledGraph> compiled;
    std::exception_ptr error;
  };
  struct DeviceEntry {
    std::once_flag once;
    DeviceSpec spec;
    std::exception_ptr error;
  };
  struct ModelEntry {
    std::once_flag once;
    ModelArch arch;
    std::exception_ptr error;
  };
  std::mutex mu;
  std::map<std::string, std::shared_ptr<GraphEntry>> graphs;
  std::map<std::string, std::shared_ptr<DeviceEntry>> devices;
  std::map<std::string, std::shared_ptr<ModelEntry>> models;
  std::map<std::string, std::string> checksums;  // file -> sha256

  template <typename T>
  std::shared_ptr<T> Slot(std::map<std::string, std::shared_ptr<T>>& m, const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    auto& p = m[key];
    if (!p) p = std::make_shared<T>();
    return p;
  }

  const ModelArch& Model(const std::string& name) {
    auto e = Slot(models, name);
    std::call_once(e->once, [&] {
      try {
        e->arch = ResolveModelArch(name);
      } catch (...) {
        e->error = std::current_exception();
      }
    });
    if (e->error) std::rethrow_exception(e->error);
    return e->arch;
  }
  const DeviceSpec& Device(const std::string& name) {
    auto e = Slot(devices, name);
    std::call_once(e->once, [&] {
      try {
        e->spec = ResolveDeviceSpec(name);
      } catch (...) {
        e->error = std::current_exception();
      }
    });
    if (e->error) std::rethrow_exception(e->error);
    return e->spec;
  }
  GraphEntry& Graph(const json& in) {
    const std::string key = fmt::format("{}|{}|{}|{}|{}", in.at("model").get<std::string>(),
                                        in.at("plan").get<std::string>(), in.at("fidelity").get<std::string>(),
                                        in.at("fusion").get<std::string>(), in.at("batch").get<int64_t>());
    auto e = Slot(graphs, key);
    std::call_once(e->once, [&] {
      try {
        const ModelArch& arch = Model(in.at("model").get<std::string>());
        BuildOptions o;
        o.fidelity = ParseFidelity(in.at("fidelity").get<std::string>());
        o.fusion = ParseFusionMode(in.at("fusion").get<std::string>());
        o.batch = in.at("batch").get<int64_t>();
        e->graph = std::make_unique<ModelGraph>(
            BuildModelGraph(arch, ResolveQuantPlan(in.at("plan").get<std::string>(), arch), o));
        e->compiled = std::make_unique<CompiledGraph>(*e->graph);
      } catch (...) {
        e->error = std::current_exception();
      }
    });
    if (e->error) std::rethrow_exception(e->error);
    return *e;
  }
  std::string Checksum(const fs::path& file) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = checksums.find(file.string());
      if (it != checksums.end()) return it->second;
    }
    const std::string sum = Sha256File(file);
    std::lock_guard<std::mutex> lock(mu);
    checksums[file.string()] = sum;
    return sum;
  }
};

ThroughputEvaluator::ThroughputEvaluator() : impl_(std::make_unique<Impl>()) {}
ThroughputEvaluator::~ThroughputEvaluator() = default;

CellResult ThroughputEvaluator::Run(const json& in) {
  const auto t0 = Clock::now();
  CellResult r;
  try {
    const std::string model = in.at("model").get<std::string>();
    const std::string device = in.at("device").get<std::string>();
    const std::string plan = in.at("plan").get<std::string>();
    const int64_t context = in.at("context").get<int64_t>();
    const int64_t batch = in.at("batch").get<int64_t>();
    const json expected = in.value("input_sha256", json::object());
    for (const auto& [kind, name] : {std::pair<std::string, std::string>{"model", model}, {"device", device},
                                     {"plan", plan}}) {
      const fs::path f = CellInputFile(kind, name);
      if (f.empty() || !fs::is_regular_file(f)) continue;
      const std::string sum = impl_->Checksum(f);
      r.checksums[f.string()] = sum;
      // The cell was made from other contents of this file: its results
      // would belong to the old file. A sweep rerun makes the new cell.
      if (expected.contains(kind) && expected[kind] != sum) {
        throw Error(fmt::format("{} file {} changed after this cell was made (SHA-256 {} when made, {} now); rerun "
                                "`lifeline sweep` on the matrix to make a cell for the new contents",
                                kind, f.string(), expected[kind].get<std::string>().substr(0, 16),
                                sum.substr(0, 16)));
      }
    }
    const DeviceSpec& d = impl_->Device(device);
    Impl::GraphEntry& g = impl_->Graph(in);
    const double step_s = g.compiled->StepSeconds(d, context);
    const DecodeMetrics dm = DecodeFromStep(step_s, batch);
    // What the device holds (roofline/eval/footprint.hpp), not what one step reads.
    const Footprint fp = ComputeFootprint(*g.graph, context);
    r.outputs = {{"tps", dm.tps},
                 {"tpot_s", dm.tpot_s},
                 {"batch_tokens_per_s", dm.batch_tokens_per_s},
                 {"weight_bytes", fp.weight_bytes},
                 {"kv_cache_bytes", fp.kv_cache_bytes},
                 {"activation_workspace_bytes", fp.activation_workspace_bytes},
                 {"footprint_bytes", fp.total_bytes}};
    if (!FitsDevice(fp, d)) {
      r.status = CellStatus::kInfeasible;
      r.error = fmt::format("{} with plan {} at context {}, batch {}: {}", model, plan, context, batch,
                            DescribeFootprint(fp, d));
    }
  } catch (const InfeasibleError& e) {
    r.status = CellStatus::kInfeasible;
    r.error = e.what();
    r.outputs = nullptr;
  } catch (const Error& e) {
    r.status = CellStatus::kFailed;
    r.error = e.what();
    r.outputs = nullptr;
  } catch (const std::exception& e) {
    r.status = CellStatus::kFailed;
    r.error = std::string("internal: ") + e.what();
    r.outputs = nullptr;
  }
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

fs::path CellWorkDir(const fs::path& store, const std::string& id) {
  return store.parent_path() / (store.stem().string() + "_cells") / id;
}

}  // namespace lifeline::sweep
