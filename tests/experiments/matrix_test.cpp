// Matrix parsing and expansion: products, include/exclude, presets, stable
// ids, and bad matrices failing with clear messages.

#include <gtest/gtest.h>

#include <set>

#include "experiments/sweep/matrix.hpp"
#include "experiments/sweep/sha256.hpp"
#include "common/error.hpp"
#include "tests/experiments/test_util.hpp"

namespace lifeline::sweep {
namespace {

using testing::ParseText;

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Padding boundaries: 55, 56 and 64 bytes.
  EXPECT_EQ(Sha256Hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(Sha256Hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(Sha256Hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

constexpr const char* kSmall = R"(
name: small
throughput:
  axes:
    model: [qwen3-4b, qwen3-14b]
    device: [device_a, device_b]
    context: [1024, 4096]
    plan: [w4, w2]
)";

TEST(Matrix, CartesianProductWithDefaults) {
  const Matrix m = ParseText(kSmall);
  EXPECT_EQ(m.name, "small");
  ASSERT_EQ(m.cells.size(), 16u);
  std::set<std::string> ids;
  for (const auto& c : m.cells) {
    ids.insert(c.id);
    EXPECT_EQ(c.kind, CellKind::kThroughput);
    EXPECT_EQ(c.id.size(), 16u);
    EXPECT_EQ(c.inputs["fidelity"], "paper");
    EXPECT_EQ(c.inputs["fusion"], "paper");
    EXPECT_EQ(c.inputs["batch"], 1);
  }
  EXPECT_EQ(ids.size(), 16u);
  // Product order: model, device, plan, context.
  EXPECT_EQ(m.cells[0].inputs["model"], "qwen3-4b");
  EXPECT_EQ(m.cells[1].inputs["context"], 4096);
  EXPECT_EQ(m.cells[2].inputs["plan"], "w2");
}

TEST(Matrix, CellIdIsSha256OfCanonicalJson) {
  const Matrix m = ParseText(kSmall);
  const SweepCell& c = m.cells[0];
  EXPECT_EQ(c.canonical,
            R"({"batch":1,"context":1024,"device":"device_a","fidelity":"paper","fusion":"paper","kind":"throughput","model":"qwen3-4b","plan":"w4"})");
  EXPECT_EQ(c.id, Sha256Hex(c.canonical).substr(0, 16));
  // Writing a default explicitly, or reordering axes, names the same cell.
  const Matrix m2 = ParseText(R"(
throughput:
  axes:
    plan: w4
    context: [1024]
    batch: 1
    fidelity: paper
    device: device_a
    model: qwen3-4b
)");
  ASSERT_EQ(m2.cells.size(), 1u);
  EXPECT_EQ(m2.cells[0].id, c.id);
}

TEST(Matrix, IncludeAndExclude) {
  const Matrix m = ParseText(R"(
throughput:
  axes:
    model: [qwen3-4b, qwen3-14b]
    device: [device_a]
    context: [1024, 4096]
    plan: [w4]
  exclude:
    - {model: qwen3-14b, context: 4096}
  include:
    - {plan: w2, context: 512}
)");
  // 4 - 1 excluded + 2 included (each model, device_a, w2, 512).
  ASSERT_EQ(m.cells.size(), 5u);
  for (const auto& c : m.cells) {
    EXPECT_FALSE(c.inputs["model"] == "qwen3-14b" && c.inputs["context"] == 4096);
  }
  EXPECT_EQ(m.cells[3].inputs["plan"], "w2");
  EXPECT_EQ(m.cells[3].inputs["context"], 512);
}

TEST(Matrix, RecoveryCellsAndLabels) {
  const Matrix m = ParseText(R"(
recovery:
  report: {model: stories260k, plan: "w4w{bits}-gateup"}
  fixed: {steps: 10, layers: [mlp.gate_proj, mlp.up_proj], lr: 2.0e-3, alpha: 64.0}
  axes:
    bits: [2, 3]
    rank: [4, 8]
)");
  ASSERT_EQ(m.cells.size(), 4u);
  const SweepCell& c = m.cells[0];
  EXPECT_EQ(c.kind, CellKind::kRecovery);
  EXPECT_EQ(c.inputs["recipe"]["bits"], 2);
  EXPECT_EQ(c.inputs["recipe"]["alpha"], 64);  // integral numbers are integers
  EXPECT_DOUBLE_EQ(c.inputs["recipe"]["lr"].get<double>(), 0.002);
  EXPECT_EQ(c.inputs["recipe"]["layers"].size(), 2u);
  EXPECT_EQ(c.labels["plan"], "w4w2-gateup");
  EXPECT_EQ(m.cells[2].labels["plan"], "w4w3-gateup");
  // Labels are not part of the id.
  const Matrix relabeled = ParseText(R"(
recovery:
  report: {model: other, plan: "x{bits}"}
  fixed: {steps: 10, layers: [mlp.gate_proj, mlp.up_proj], lr: 2.0e-3, alpha: 64}
  axes:
    bits: [2, 3]
    rank: [4, 8]
)");
  EXPECT_EQ(relabeled.cells[0].id, c.id);
}

TEST(Matrix, PresetReplacesAxes) {
  const std::string yaml = std::string(kSmall) + R"(
presets:
  tiny:
    throughput:
      axes: {model: [qwen3-4b], context: [512]}
)";
  EXPECT_EQ(ParseText(yaml, "tiny").cells.size(), 4u);
  EXPECT_EQ(ParseText(yaml).cells.size(), 16u);
  try {
    ParseText(yaml, "tiyn");
    FAIL() << "unknown preset accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'tiny'"), std::string::npos) << e.what();
  }
}

TEST(Matrix, ShippedPaperMatrix) {
  const Matrix m = LoadMatrix(std::string(LIFELINE_SOURCE_TREE) + "/experiments/paper.yaml");
  int thr = 0, rec = 0;
  for (const auto& c : m.cells) (c.kind == CellKind::kThroughput ? thr : rec)++;
  EXPECT_EQ(thr, 3 * 2 * 7 * 4);  // the paper's 3 plans + W4/W3 gate/up
  EXPECT_EQ(rec, 2 * 3 * 2);      // bits x rank x samples
  const Matrix smoke = LoadMatrix(std::string(LIFELINE_SOURCE_TREE) + "/experiments/paper.yaml", "smoke");
  EXPECT_EQ(smoke.cells.size(), 3u * 2 * 4 + 1);
}

// Bad matrices: each fails with a ConfigError naming the position and the problem.
struct BadCase {
  const char* name;
  const char* yaml;
  std::vector<const char*> fragments;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadMatrix : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadMatrix, FailsClearly) {
  const BadCase& c = GetParam();
  try {
    ParseText(c.yaml);
    FAIL() << c.name << ": accepted";
  } catch (const ConfigError& e) {
    for (const char* f : c.fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, BadMatrix,
    ::testing::Values(
        BadCase{"unknown_axis",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4]\n    contxt: [2048]\n",
                {"test.yaml:7:5", "throughput.axes.contxt", "unknown axis", "did you mean 'context'"}},
        BadCase{"empty_axis",
                "throughput:\n  axes:\n    model: []\n    device: [device_a]\n    context: [1024]\n    plan: [w4]\n",
                {"test.yaml:3", "throughput.axes.model", "empty axis"}},
        BadCase{"everything_excluded",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4]\n  exclude:\n    - {plan: w4}\n",
                {"empty product"}},
        BadCase{"exclude_matches_nothing",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4, w2]\n  exclude:\n    - {context: 2048}\n",
                {"throughput.exclude[0]", "matches no cell"}},
        BadCase{"include_exclude_conflict",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4, w2]\n  exclude:\n    - {plan: w2}\n  include:\n    - {plan: w2, context: 512}\n",
                {"throughput.include[0]", "conflicts with throughput.exclude[0]"}},
        BadCase{"unknown_model",
                "throughput:\n  axes:\n    model: [qwen3-4bb]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4]\n",
                {"test.yaml:3", "unknown model 'qwen3-4bb'", "did you mean 'qwen3-4b'"}},
        BadCase{"unknown_device",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_c]\n    context: [1024]\n"
                "    plan: [w4]\n",
                {"unknown device 'device_c'", "did you mean 'device_a'"}},
        BadCase{"unknown_plan",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w3]\n",
                {"unknown plan 'w3'", "did you mean 'w4'"}},
        BadCase{"bad_context",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [4k]\n"
                "    plan: [w4]\n",
                {"throughput.axes.context[0]", "not a positive integer"}},
        BadCase{"missing_axis",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    plan: [w4]\n",
                {"throughput.axes.context", "missing axis"}},
        BadCase{"unknown_recipe_key",
                "recovery:\n  axes:\n    bits: [2]\n    rnak: [4]\n",
                {"recovery.axes.rnak", "unknown recipe key", "did you mean 'rank'"}},
        BadCase{"fixed_and_swept", "recovery:\n  fixed: {rank: 4}\n  axes:\n    rank: [8]\n",
                {"recovery.axes.rank", "both fixed and swept"}},
        BadCase{"label_placeholder", "recovery:\n  report: {plan: \"w{bitz}\"}\n  axes:\n    bits: [2]\n",
                {"{bitz}"}},
        BadCase{"unknown_section", "name: x\nrecovry: {}\n", {"recovry", "did you mean 'recovery'"}},
        BadCase{"no_sections", "name: x\n", {"no cells"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lifeline::sweep
