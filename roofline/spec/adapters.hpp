#pragma once
// LoRA adapters at inference (Hu et al. 2021): a plan's `adapters:` section
// names linears by glob pattern and gives each a rank, a storage dtype and a
// deployment mode. Attached adapters add the low-rank A (in x r) and B
// (r x out) products beside the frozen linear; merged ones are folded into
// its weight (W + B A) before deployment and cost nothing at inference, but
// merging into a quantized weight means quantizing W + B A again: a different
// model from the one the adapters were trained on.

#include <cstdint>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace lifeline {

enum class AdapterMode {
  kAttached,  // A and B run as their own GEMMs beside the frozen linear
  kMerged,    // folded into the linear's weight: W' = W + B A
};
enum class AdapterDtype { kBf16, kF16, kF32 };

std::string AdapterModeName(AdapterMode m);
std::string AdapterDtypeName(AdapterDtype d);
double AdapterBytesPerElement(AdapterDtype d);  // 2, 2 or 4

// Largest rank accepted (the recovery harness's own limit).
inline constexpr int64_t kMaxAdapterRank = 65536;

struct AdapterRule {
  std::string pattern;                        // glob over linear names ("*.mlp.gate_proj")
  int64_t rank = 0;                           // r of A (in x r) and B (r x out)
  AdapterDtype dtype = AdapterDtype::kBf16;   // storage and compute dtype of A and B
  AdapterMode mode = AdapterMode::kAttached;
  std::string where;                          // file:line:col of the entry, for errors
};

// Parses the plan's `adapters:` list (strict keys: pattern, rank, dtype, mode).
// `file` names the source in errors.
std::vector<AdapterRule> ParseAdapters(const YAML::Node& list, const std::string& file);
// The YAML list ParseAdapters reads back to the same rules.
YAML::Node AdaptersToNode(const std::vector<AdapterRule>& adapters);

// Index of the first adapter whose pattern matches `linear_name`, or -1.
int MatchAdapter(const std::vector<AdapterRule>& adapters, const std::string& linear_name);

}  // namespace lifeline
