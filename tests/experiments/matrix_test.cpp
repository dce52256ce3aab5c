// Matrix parsing and expansion: products, include/exclude, presets, stable
// ids, and bad matrices failing with clear messages.

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
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

TEST(Sha256, FileDigest) {
  const std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("lifeline_sha256_" + std::to_string(::getpid()) + ".bin");
  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_EQ(Sha256File(p), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::ofstream(p, std::ios::binary) << std::string(1000000, 'a');  // read in several blocks
  EXPECT_EQ(Sha256File(p), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  std::ofstream(p, std::ios::binary | std::ios::trunc).flush();
  EXPECT_EQ(Sha256File(p), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::filesystem::remove(p);
  EXPECT_THROW(Sha256File(p), ConfigError);
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
    EXPECT_EQ(c.inputs["fidelity"], "exact");
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
  // The digests of the zoo/hwspec files the cell reads are part of its inputs.
  const std::string model_sha = Sha256File(CellInputFile("model", "qwen3-4b"));
  const std::string device_sha = Sha256File(CellInputFile("device", "device_a"));
  EXPECT_EQ(c.canonical,
            R"({"batch":1,"context":1024,"device":"device_a","fidelity":"exact","fusion":"paper",)"
            R"("input_sha256":{"device":")" + device_sha + R"(","model":")" + model_sha +
                R"("},"kind":"throughput","model":"qwen3-4b","plan":"w4"})");
  EXPECT_EQ(c.id, Sha256Hex(c.canonical).substr(0, 16));
  // Writing a default explicitly, or reordering axes, names the same cell.
  const Matrix m2 = ParseText(R"(
throughput:
  axes:
    plan: w4
    context: [1024]
    batch: 1
    fidelity: exact
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

// The recovery ablations: the base run (`fixed`) plus one cell per include
// rule, each differing from the base only in the keys the rule names.
TEST(Matrix, ShippedAblationMatrices) {
  for (const char* name : {"stories260k_quick", "stories260k"}) {
    SCOPED_TRACE(name);
    const Matrix m = LoadMatrix(std::string(LIFELINE_SOURCE_TREE) + "/experiments/ablations/" + name + ".yaml");
    ASSERT_EQ(m.cells.size(), 13u);
    const nlohmann::json base = m.cells[0].inputs["recipe"];
    EXPECT_EQ(base["rank"], 32);
    EXPECT_EQ(base["bits"], 2);
    EXPECT_EQ(base["data"], "synthetic");
    // What each run changes, in file order.
    const std::vector<std::map<std::string, nlohmann::json>> changes = {
        {{"rank", 2}},
        {{"rank", 4}},
        {{"rank", 8}},
        {{"rank", 16}},
        {{"lora_targets", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}}},
        {{"init", "olora"}},
        {{"init", "loftq"}},
        {{"data", "text:../shared/data/tinystories/tinystories_val_dev.txt"}, {"data_skip", 200}},
        {{"samples", 1024}},
        {{"samples", 4096}},
        {{"samples", 16384}},
        {{"bits", 3}}};
    for (size_t i = 0; i < changes.size(); ++i) {
      SCOPED_TRACE(i + 1);
      const nlohmann::json& recipe = m.cells[i + 1].inputs["recipe"];
      nlohmann::json expected = base;
      for (const auto& [k, v] : changes[i]) expected[k] = v;
      EXPECT_EQ(recipe, expected);
    }
    EXPECT_EQ(m.cells[12].labels["plan"], "gateup-int3");
  }
  const Matrix smoke =
      LoadMatrix(std::string(LIFELINE_SOURCE_TREE) + "/experiments/ablations/stories260k_quick.yaml", "smoke");
  ASSERT_EQ(smoke.cells.size(), 2u);
  EXPECT_EQ(smoke.cells[0].inputs["recipe"]["steps"], 2);
  EXPECT_EQ(smoke.cells[1].inputs["recipe"]["rank"], 4);
  const Matrix inits =
      LoadMatrix(std::string(LIFELINE_SOURCE_TREE) + "/experiments/ablations/stories260k_quick.yaml", "inits");
  ASSERT_EQ(inits.cells.size(), 3u);
  EXPECT_EQ(inits.cells[0].inputs["recipe"]["init"], "standard");
  EXPECT_EQ(inits.cells[1].inputs["recipe"]["init"], "olora");
  EXPECT_EQ(inits.cells[2].inputs["recipe"]["init"], "loftq");
  EXPECT_EQ(inits.cells[2].inputs["recipe"]["deploy_plan"], "experiments/plans/stories260k_w4w2_gateup.yaml");
}

// Editing a device (or model/plan) file the matrix names makes a new cell:
// the file's SHA-256 is part of the cell's identity.
TEST(Matrix, ChangedInputFileMakesANewCell) {
  testing::TempDir dir("matrix_digest");
  const std::string dev =
      "name: small\ndescription: test\nint8_tops: 50\nmemory_bandwidth_gb_per_s: 100\n"
      "efficiency: {memory: 0.8, compute: 0.5, attention_compute: 0.25,\n"
      "  moe_expert_compute_int2: 0.004, moe_expert_compute_int4: 0.004}\n";
  testing::WriteFile(dir / "small.yaml", dev);
  testing::WriteFile(dir / "m.yaml",
                     "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [small.yaml]\n    context: [1024]\n"
                     "    plan: [w4]\n");
  const Matrix before = LoadMatrix(dir / "m.yaml");
  ASSERT_EQ(before.cells.size(), 1u);
  EXPECT_EQ(before.cells[0].inputs["input_sha256"]["device"], Sha256File(dir / "small.yaml"));
  EXPECT_EQ(LoadMatrix(dir / "m.yaml").cells[0].id, before.cells[0].id);  // same contents, same cell
  testing::WriteFile(dir / "small.yaml", std::string(dev).replace(dev.find("100"), 3, "150"));
  const Matrix after = LoadMatrix(dir / "m.yaml");
  EXPECT_NE(after.cells[0].id, before.cells[0].id);
  EXPECT_EQ(after.cells[0].inputs["device"], before.cells[0].inputs["device"]);  // same name
}

// A name becomes the folder out/<name>/: one plain component only.
TEST(Matrix, NameMustStayInsideTheOutputFolder) {
  for (const char* bad : {"../escape", "/tmp/abs", "a/b", "..", ".hidden", ""}) {
    const std::string yaml = std::string("name: \"") + bad +
                             "\"\nthroughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n"
                             "    context: [1024]\n    plan: [w4]\n";
    try {
      ParseText(yaml);
      ADD_FAILURE() << "accepted name '" << bad << "'";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("test.yaml:1"), std::string::npos) << what;
      EXPECT_NE(what.find("not a plain name"), std::string::npos) << what;
      EXPECT_NE(what.find("no '/', no '..'"), std::string::npos) << what;
    }
  }
  EXPECT_EQ(ParseText("name: my-sweep_2.1\nthroughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n"
                      "    context: [1024]\n    plan: [w4]\n")
                .name,
            "my-sweep_2.1");
}

// A product too big to hold is refused before it is expanded, with the count
// and the limit.
TEST(Matrix, HugeProductIsRefusedWithTheLimit) {
  std::string contexts, batches;
  for (int i = 1; i <= 1000; ++i) {
    contexts += (i > 1 ? ", " : "") + std::to_string(i);
    batches += (i > 1 ? ", " : "") + std::to_string(i);
  }
  std::string models;
  for (int i = 0; i < 100; ++i) models += (i ? ", " : "") + std::string("qwen3-4b");
  const std::string yaml = "throughput:\n  axes:\n    model: [" + models + "]\n    device: [device_a]\n    context: [" +
                           contexts + "]\n    plan: [w4]\n    batch: [" + batches + "]\n";
  try {
    ParseText(yaml);
    FAIL() << "a 10^8-cell matrix was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("100000000 cells"), std::string::npos) << what;
    EXPECT_NE(what.find("model 100 x device 1 x plan 1 x context 1000"), std::string::npos) << what;
    EXPECT_NE(what.find("limit of 200000 cells"), std::string::npos) << what;
  }
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
        BadCase{"context_beyond_the_limit",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n"
                "    context: [1024, 9223372036854775807]\n    plan: [w4]\n",
                {"test.yaml:5:21", "throughput.axes.context[1]", "beyond the limit of 16777216 tokens"}},
        BadCase{"batch_beyond_the_limit",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4]\n    batch: [1000000]\n",
                {"throughput.axes.batch[0]", "beyond the limit of 65536 sequences"}},
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
        BadCase{"no_sections", "name: x\n", {"no cells"}},
        BadCase{"duplicate_key",
                "throughput:\n  axes:\n    model: [qwen3-4b]\n    device: [device_a]\n    context: [1024]\n"
                "    plan: [w4]\n    model: [qwen3-14b]\n",
                {"test.yaml:7", "duplicate"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lifeline::sweep
