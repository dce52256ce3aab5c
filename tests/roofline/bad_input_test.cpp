// One case per file under tests/data/bad/: each must fail with a ConfigError
// containing the fragment on its first line ("# expect: ..."), the file name
// and a line number, and never crash.

#include <gtest/gtest.h>

#include <fstream>

#include "common/error.hpp"
#include "roofline/graph/op_graph.hpp"
#include "roofline/spec/device_spec.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline {
namespace {

struct BadCase {
  std::filesystem::path file;
  std::string expect;
};

std::vector<BadCase> LoadCases() {
  std::vector<BadCase> cases;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(LIFELINE_TEST_DATA_DIR) / "bad")) {
    if (e.path().extension() != ".yaml") continue;
    std::ifstream in(e.path());
    std::string first;
    std::getline(in, first);
    const std::string tag = "# expect: ";
    cases.push_back({e.path(), first.rfind(tag, 0) == 0 ? first.substr(tag.size()) : ""});
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

TEST_P(BadInput, FailsWithClearMessage) {
  const BadCase& c = GetParam();
  ASSERT_FALSE(c.expect.empty()) << c.file << " needs a first line '# expect: <message fragment>'";
  try {
    Load(c.file);
    FAIL() << c.file << " was accepted";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find(c.file.string() + ":"), std::string::npos) << "no file:line in: " << msg;
    EXPECT_TRUE(msg.find("expected") != std::string::npos) << "no expectation in: " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Files, BadInput, ::testing::ValuesIn(LoadCases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           std::string n = info.param.file.stem().string();
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(BadInputCoverage, EveryIssueCaseHasAFile) {
  // malformed YAML, unknown/misspelled/missing keys, non-positive bandwidth or
  // TOPS, efficiencies outside (0, 1], heads vs KV heads, group sizes, bit
  // widths, patterns matching nothing, units in values.
  const auto cases = LoadCases();
  EXPECT_GE(cases.size(), 17u);
}

}  // namespace
}  // namespace lifeline
