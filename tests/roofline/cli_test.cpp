// End to end through the `lifeline` binary, as a user runs it.

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>
#include <sstream>

namespace {

struct ExecResult {
  int status;
  std::string output;
};

ExecResult Exec(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + std::string(LIFELINE_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int st = p ? pclose(p) : -1;
  return {WEXITSTATUS(st), out};
}

TEST(Cli, HelpListsSubcommands) {
  const ExecResult r = Exec("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* s : {"paper", "explain", "calibrate"}) EXPECT_NE(r.output.find(s), std::string::npos) << s;
}

TEST(Cli, PaperWritesTheContract) {
  // The paper reference is part of the repository: no ../shared is needed.
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_cli_paper";
  std::filesystem::remove_all(dir);
  const ExecResult r = Exec("paper --out " + dir.string(), "LIFELINE_SHARED_DIR=/nonexistent/shared ");
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(dir / "decode_tps.csv");
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "device,model,context_tokens,tps_w4,tps_w2,tps_w4w2_gateup,gain_pct,capture_pct");
  int rows = 0;
  for (std::string line; std::getline(in, line);) ++rows;
  EXPECT_EQ(rows, 42);
  for (const char* stem : {"table1_device_a", "table2_device_b", "table6_device_a", "table7_device_b",
                           "fidelity_comparison"}) {
    for (const char* ext : {".md", ".csv", ".tex", ".json"}) {
      EXPECT_TRUE(std::filesystem::exists(dir / (std::string(stem) + ext))) << stem << ext;
    }
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "inputs" / "device_a.yaml"));
  EXPECT_TRUE(std::filesystem::exists(dir / "inputs" / "paper_decode_tps.csv"));
}

TEST(Cli, PaperRefusesANonEmptyDirectoryItDidNotWrite) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_cli_paper_foreign";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "summary.md") << "my notes\n";
  const ExecResult r = Exec("paper --out " + dir.string());
  EXPECT_EQ(r.status, 2) << r.output;
  for (const char* f : {"--out", "not empty", "manifest.txt", "--force"})
    EXPECT_NE(r.output.find(f), std::string::npos) << f << "\n" << r.output;
  std::ifstream kept(dir / "summary.md");
  std::string line;
  std::getline(kept, line);
  EXPECT_EQ(line, "my notes");  // nothing was overwritten
  EXPECT_FALSE(std::filesystem::exists(dir / "decode_tps.csv"));
  // --force writes into it; a rerun then finds its own manifest and needs no --force.
  const ExecResult forced = Exec("paper --force --out " + dir.string());
  ASSERT_EQ(forced.status, 0) << forced.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "decode_tps.csv"));
  const ExecResult again = Exec("paper --out " + dir.string());
  EXPECT_EQ(again.status, 0) << again.output;
  std::filesystem::remove_all(dir);
}

TEST(Cli, ExplainRefusesRunSizesBeyondTheLimits) {
  struct Case {
    const char* args;
    const char* fragment;
  } cases[] = {
      {"--context 9223372036854775807", "key 'context': 9223372036854775807 is beyond the limit of 16777216 tokens"},
      {"--context 0", "key 'context': must be positive"},
      {"--phase prefill --prompt 100000000", "key 'prompt_tokens': 100000000 is beyond the limit of 16777216 tokens"},
      {"--batch 100000", "key 'batch': 100000 is beyond the limit of 65536 sequences"},
      {"--phase prefill --batch 65536 --prompt 16777216", "beyond the limit of 4294967296 tokens per step"},
  };
  for (const auto& c : cases) {
    const ExecResult r = Exec(std::string("explain --model qwen3-4b ") + c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(Cli, ExplainShowsPerOperatorBreakdown) {
  const ExecResult r = Exec("explain --model qwen3-4b --device device_a --plan w4w2-gateup --context 4096");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("layers.*.mlp.gate_proj"), std::string::npos);
  EXPECT_NE(r.output.find("INT2 g32"), std::string::npos);
  EXPECT_NE(r.output.find("TPOT"), std::string::npos);
  const ExecResult csv = Exec("explain --model gpt-oss-20b --per-layer --format csv");
  ASSERT_EQ(csv.status, 0) << csv.output;
  EXPECT_NE(csv.output.find("layers.23.mlp.experts.down_proj"), std::string::npos);
}

TEST(Cli, BadInputIsAnErrorNotACrash) {
  const ExecResult r = Exec("explain --model no-such-model");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  const ExecResult p = Exec("explain --plan w3");
  EXPECT_EQ(p.status, 2);
  EXPECT_NE(p.output.find("unknown quantization preset"), std::string::npos) << p.output;
  const ExecResult f = Exec("explain --fusion full");
  EXPECT_EQ(f.status, 2);
}

}  // namespace
