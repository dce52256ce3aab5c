#include "roofline/spec/adapters.hpp"

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {

std::string AdapterModeName(AdapterMode m) { return m == AdapterMode::kAttached ? "attached" : "merged"; }

std::string AdapterDtypeName(AdapterDtype d) {
  switch (d) {
    case AdapterDtype::kBf16: return "bf16";
    case AdapterDtype::kF16: return "f16";
    case AdapterDtype::kF32: return "f32";
  }
  return "bf16";
}

double AdapterBytesPerElement(AdapterDtype d) { return d == AdapterDtype::kF32 ? 4.0 : 2.0; }

std::vector<AdapterRule> ParseAdapters(const YAML::Node& list, const std::string& file) {
  if (!list.IsSequence() || list.size() == 0) {
    throw MakeConfigError(Where(file, list), "adapters", "is not a non-empty list",
                          "a list of {pattern, rank[, dtype][, mode]}",
                          "e.g. adapters: [{pattern: \"*.mlp.gate_proj\", rank: 32, dtype: bf16, mode: attached}]; "
                          "leave the key out for no adapters");
  }
  std::vector<AdapterRule> out;
  for (size_t i = 0; i < list.size(); ++i) {
    StrictMap m(list[i], file, "adapters[" + std::to_string(i) + "]");
    AdapterRule a;
    a.where = Where(file, list[i]);
    a.pattern = m.String("pattern");
    if (a.pattern.empty()) {
      throw MakeConfigError(m.WhereKey("pattern"), m.KeyPath("pattern"), "is empty",
                            "a glob over linear names such as '*.mlp.gate_proj'", "");
    }
    a.rank = m.PositiveInteger("rank");
    if (a.rank > kMaxAdapterRank) {
      throw MakeConfigError(m.WhereKey("rank"), m.KeyPath("rank"),
                            std::to_string(a.rank) + " is beyond the limit of " + std::to_string(kMaxAdapterRank),
                            "1.." + std::to_string(kMaxAdapterRank), "");
    }
    if (auto d = m.OptionalString("dtype")) {
      if (*d == "bf16") a.dtype = AdapterDtype::kBf16;
      else if (*d == "f16") a.dtype = AdapterDtype::kF16;
      else if (*d == "f32") a.dtype = AdapterDtype::kF32;
      else {
        const std::string guess = DidYouMean(*d, {"bf16", "f16", "f32"});
        throw MakeConfigError(m.WhereKey("dtype"), m.KeyPath("dtype"), "unknown adapter dtype '" + *d + "'",
                              "bf16, f16 or f32", guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
    }
    if (auto md = m.OptionalString("mode")) {
      if (*md == "attached") a.mode = AdapterMode::kAttached;
      else if (*md == "merged") a.mode = AdapterMode::kMerged;
      else {
        const std::string guess = DidYouMean(*md, {"attached", "merged"});
        throw MakeConfigError(m.WhereKey("mode"), m.KeyPath("mode"), "unknown adapter mode '" + *md + "'",
                              "attached (A and B run beside the linear) or merged (folded into its weight)",
                              guess.empty() ? "" : "did you mean '" + guess + "'?");
      }
    }
    m.Finish();
    out.push_back(a);
  }
  return out;
}

YAML::Node AdaptersToNode(const std::vector<AdapterRule>& adapters) {
  YAML::Node n;
  for (const auto& a : adapters) {
    YAML::Node e;
    e["pattern"] = a.pattern;
    e["rank"] = a.rank;
    e["dtype"] = AdapterDtypeName(a.dtype);
    e["mode"] = AdapterModeName(a.mode);
    n.push_back(e);
  }
  return n;
}

int MatchAdapter(const std::vector<AdapterRule>& adapters, const std::string& linear_name) {
  for (size_t i = 0; i < adapters.size(); ++i) {
    if (GlobMatch(adapters[i].pattern, linear_name)) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace lifeline
