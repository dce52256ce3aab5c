#pragma once
// The paper's decode-throughput comparison: TPS for W4, W2 and W4/W2-GateUp,
// Gain% and Capture%, for models x devices x contexts, plus the published
// reference values and the calibration of the paper's devices against them.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "roofline/eval/calibration.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"

namespace lifeline {

// The three configurations compared, as preset plan names.
inline const std::vector<std::string> kPaperPlans = {"w4", "w2", "w4w2-gateup"};
inline const std::vector<std::string> kPaperModels = {"qwen3-4b", "qwen3-14b", "gpt-oss-20b"};
inline const std::vector<std::string> kPaperDevices = {"device_a", "device_b"};
inline const std::vector<int64_t> kPaperContexts = {1024, 4096, 8192, 16384, 32768};
inline const std::vector<int64_t> kPaperContextsExtended = {512, 1024, 2048, 4096, 8192, 16384, 32768};

struct PaperRow {
  std::string device;       // device name
  std::string model;        // zoo name
  int64_t context_tokens = 0;
  double tps_w4 = 0;        // decode tokens/s, every linear INT4
  double tps_w2 = 0;        // every linear INT2 g32
  double tps_w4w2_gateup = 0;  // gate/up INT2 g32, rest INT4
  double gain_pct = 0;      // (TPS(W4/W2) / TPS(W4) - 1) * 100
  double capture_pct = 0;   // (TPS(W4/W2) - TPS(W4)) / (TPS(W2) - TPS(W4)) * 100
};
double GainPct(double w4, double w4w2);
double CapturePct(double w4, double w2, double w4w2);

// Published values (reference/paper_decode_tps.csv).
struct PaperReferenceRow {
  double tps_w4 = 0, tps_w2 = 0, tps_w4w2_gateup = 0, gain_pct = 0;
};
using PaperKey = std::tuple<std::string, std::string, int64_t>;  // device, model, context
using PaperReference = std::map<PaperKey, PaperReferenceRow>;
PaperReference LoadPaperReference(const std::filesystem::path& csv);
std::filesystem::path DefaultPaperReferencePath();

// Decode TPS of one model/plan/device/context at batch 1 with paper fusion.
double DecodeTps(const ModelArch& arch, const std::string& plan, const DeviceSpec& d, int64_t context,
                 Fidelity fidelity);

// Rows for every device x model x context.
std::vector<PaperRow> ComputePaperRows(const std::vector<DeviceSpec>& devices, const std::vector<ModelArch>& models,
                                       const std::vector<int64_t>& contexts, Fidelity fidelity);

// Fits a paper device's efficiencies and overheads to the published TPS of
// every model, plan and context for that device (paper fidelity).
struct PaperCalibration {
  CalibrationResult fit;
  std::vector<PaperKey> keys;        // one per observation triple
  std::vector<std::string> plans;    // plan of each observation
};
PaperCalibration CalibratePaperDevice(const DeviceSpec& initial, const std::vector<ModelArch>& models,
                                      const PaperReference& ref);
// The parameters the paper calibration fits.
std::vector<DeviceParam> PaperFitParams();

}  // namespace lifeline
