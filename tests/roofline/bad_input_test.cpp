// One test per file under tests/data/bad/: each must fail with a ConfigError
// (never a crash or another error) whose message holds
//   - the fragment of its "# expect: ..." line,
//   - "<file>:<line>:" with the line of its "# line: N" line (the offending
//     key or value), and
//   - "key '<key>'" with the key path of its "# key: ..." line ("none" for
//     malformed YAML, where no key has been read).
// A YAML case carries these lines at its top; a JSON case (a Hugging Face
// config.json, which has no comments) in <name>.expect beside it. The file
// name's prefix says what it is: device_, model_ (model_zoo YAML or config
// JSON) or plan_ (checked against qwen3-4b).

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "common/error.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

struct BadCase {
  std::filesystem::path file;
  std::map<std::string, std::string> expect;  // "expect", "key", "line" from the header
};

std::filesystem::path BadDir() { return std::filesystem::path(LIFELINE_TEST_DATA_DIR) / "bad"; }

// The "# name: value" lines at the top of `header`.
std::map<std::string, std::string> ReadHeader(const std::filesystem::path& header) {
  std::map<std::string, std::string> h;
  std::ifstream in(header);
  for (std::string line; std::getline(in, line) && line.rfind("# ", 0) == 0;) {
    const size_t colon = line.find(": ");
    if (colon != std::string::npos) h[line.substr(2, colon - 2)] = line.substr(colon + 2);
  }
  return h;
}

std::vector<BadCase> LoadCases() {
  std::vector<BadCase> cases;
  for (const auto& e : std::filesystem::directory_iterator(BadDir())) {
    const auto ext = e.path().extension();
    if (ext == ".yaml") cases.push_back({e.path(), ReadHeader(e.path())});
    if (ext == ".json") {
      cases.push_back({e.path(), ReadHeader(std::filesystem::path(e.path()).replace_extension(".expect"))});
    }
  }
  std::sort(cases.begin(), cases.end(), [](const BadCase& a, const BadCase& b) { return a.file < b.file; });
  return cases;
}

void Load(const std::filesystem::path& f) {
  const std::string stem = f.stem().string();
  if (stem.rfind("device_", 0) == 0) {
    LoadDeviceSpec(f);
  } else if (stem.rfind("model_", 0) == 0) {
    LoadModelArch(f);
  } else if (stem.rfind("plan_", 0) == 0) {
    const ModelArch a = ResolveModelArch("qwen3-4b");
    BuildModelGraph(a, LoadQuantPlan(f), BuildOptions{});
  } else {
    FAIL() << "bad-input file must start with device_, model_ or plan_: " << f;
  }
}

class BadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInput, FailsNamingFileLineAndKey) {
  const BadCase& c = GetParam();
  for (const char* field : {"expect", "key", "line"}) {
    ASSERT_TRUE(c.expect.count(field)) << c.file << " needs a header line '# " << field << ": ...'";
  }
  try {
    Load(c.file);
    FAIL() << c.file << " was accepted";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(c.expect.at("expect")), std::string::npos) << "message: " << msg;
    const std::string at = c.file.string() + ":" + c.expect.at("line") + ":";
    EXPECT_NE(msg.find(at), std::string::npos) << "no " << at << " in: " << msg;
    if (c.expect.at("key") != "none") {  // "none": a syntax error, before any key is read
      const std::string key = "key '" + c.expect.at("key") + "'";
      EXPECT_NE(msg.find(key), std::string::npos) << "no " << key << " in: " << msg;
    }
    EXPECT_NE(msg.find("expected"), std::string::npos) << "no expectation in: " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Files, BadInput, ::testing::ValuesIn(LoadCases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           std::string n = info.param.file.filename().string();
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// Every kind of bad input the loaders handle has its file: a case deleted by
// mistake fails here by name instead of silently shrinking the suite above.
TEST(BadInputFiles, EveryKindHasACase) {
  for (const char* name :
       {"device_malformed.yaml", "device_unknown_key.yaml", "device_misspelled_key.yaml", "device_missing_key.yaml",
        "device_zero_bandwidth.yaml", "device_negative_tops.yaml", "device_efficiency_percent.yaml",
        "device_efficiency_zero.yaml", "device_units_in_value.yaml", "device_duplicate_key.yaml",
        "model_heads_not_divisible.yaml", "model_layer_types_count.yaml", "model_missing_layers.yaml",
        "model_misspelled_key.yaml", "model_duplicate_key.yaml", "model_units_in_value.yaml",
        "model_too_many_layers.yaml", "model_hidden_size_too_large.yaml", "model_vocab_too_large.yaml",
        "model_too_many_experts.yaml", "model_hf_duplicate_key.json", "model_hf_nested_duplicate_key.json",
        "model_hf_too_many_layers.json", "plan_bad_bits.yaml", "plan_group_not_dividing.yaml",
        "plan_pattern_matches_nothing.yaml", "plan_unknown_key.yaml", "plan_duplicate_key.yaml",
        "plan_units_in_value.yaml"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(BadDir() / name)) << name;
  }
}

}  // namespace
}  // namespace lifeline
