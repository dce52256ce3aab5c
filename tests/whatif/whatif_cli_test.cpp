// `lifeline whatif` and `lifeline probe` end to end.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "tests/whatif/test_util.hpp"

namespace {

using lifeline::testing::Exec;

TEST(WhatifCli, OnePointPrintsTheAnalysis) {
  const auto r = Exec("whatif --model qwen3-4b --device device_a --set memory_bandwidth_gb_per_s=150 --context 8192");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* s : {"150 GB/s", "Elasticities", "memory_bandwidth_gb_per_s", "ridge point", "flips bound at",
                        "layers.*.mlp.down_proj", "TPOT / TTFT"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
}

TEST(WhatifCli, BadArgumentsExitWithAConfigError) {
  struct Case {
    const char* args;
    const char* fragment;
  } cases[] = {
      {"--set memory_bandwith_gb_per_s=150", "did you mean 'memory_bandwidth_gb_per_s'"},
      {"--set memory_bandwidth_gb_per_s=150GB/s", "write just 150"},
      {"--set efficiency.memory=80", "outside (0, 1]"},
      {"--sweep int8_tops=100:10:10", "range is empty"},
      {"--sweep int8_tops=1:10:0", "step is zero"},
      {"--sweep int8_tops=", "empty value"},
      {"--sweep memory_bandwidth_gb_per_s=50,0", "value '0'"},
      {"--format xml", "unknown format"},
  };
  for (const auto& c : cases) {
    const auto r = Exec(std::string("whatif ") + c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find("error: "), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.fragment), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(WhatifCli, SizesBeyondTheLimitsAreRefusedWithTheLimit) {
  struct Case {
    const char* args;
    std::vector<const char*> fragments;
  } cases[] = {
      {"--set model.num_hidden_layers=1000000",
       {"--set model.num_hidden_layers=1000000", "key 'num_hidden_layers'", "beyond the limit of 1024 layers"}},
      {"--set model.vocab_size=1000000000", {"key 'vocab_size'", "beyond the limit of 4194304"}},
      {"--context 9223372036854775807", {"--context", "beyond the limit of 16777216 tokens"}},
      {"--set context=100000000", {"--set context=100000000", "beyond the limit of 16777216 tokens"}},
      {"--prompt 100000000", {"--prompt", "beyond the limit of 16777216 tokens"}},
      {"--batch 1000000", {"--batch", "beyond the limit of 65536 sequences"}},
      {"--sweep memory_bandwidth_gb_per_s=1:100000:1 --sweep int8_tops=1:100000:1 --format csv",
       {"the grid has 10000000000 points, beyond the limit of 10000000 (--max-points)", "--max-points 10000000000"}},
      {"--sweep memory_bandwidth_gb_per_s=1:1000000000:1 --format csv",
       {"1000000000 values, beyond the limit of 10000000 values per axis"}},
  };
  for (const auto& c : cases) {
    const auto r = Exec(std::string("whatif ") + c.args + " --out /dev/null");
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    for (const char* f : c.fragments) {
      EXPECT_NE(r.output.find(f), std::string::npos) << c.args << ": " << f << "\n" << r.output;
    }
  }
}

TEST(WhatifCli, MaxPointsRaisesTheGridLimit) {
  const std::string sweep =
      "whatif --sweep memory_bandwidth_gb_per_s=50:150:50 --sweep context=1024,4096 --format csv ";
  const auto refused = Exec(sweep + "--max-points 5");
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("the grid has 6 points, beyond the limit of 5"), std::string::npos) << refused.output;
  const auto accepted = Exec(sweep + "--max-points 6", false);
  ASSERT_EQ(accepted.status, 0) << accepted.output;
  EXPECT_EQ(std::count(accepted.output.begin(), accepted.output.end(), '\n'), 7);  // header + 6 rows
}

TEST(WhatifCli, SweepStreamsCsvAndJson) {
  const auto csv = Exec("whatif --sweep memory_bandwidth_gb_per_s=50:150:50 --sweep context=1024,4096 --baseline w4 "
                        "--format csv", false);
  ASSERT_EQ(csv.status, 0) << csv.output;
  std::istringstream in(csv.output);
  std::string header, line;
  std::getline(in, header);
  EXPECT_EQ(header,
            "memory_bandwidth_gb_per_s,context,tps,tpot_s,batch_tps,ttft_s,elasticity_bandwidth,elasticity_tops,"
            "tps_baseline,gain_pct,footprint_bytes,fits");
  int rows = 0;
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 6);
  EXPECT_EQ(csv.output.find("whatif:"), std::string::npos);  // no progress line in a pipe

  const auto js = Exec("whatif --sweep plan.kv_cache_dtype=bf16,int4 --sweep context=32768 --format json", false);
  ASSERT_EQ(js.status, 0) << js.output;
  const auto j = nlohmann::json::parse(js.output);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["plan.kv_cache_dtype"], "int4");
  EXPECT_EQ(j[1]["context"], 32768);
  EXPECT_GT(j[1]["tps"].get<double>(), j[0]["tps"].get<double>());
}

TEST(WhatifCli, MillionPointSweepTakesSeconds) {
  const auto out = std::filesystem::temp_directory_path() / "lifeline_whatif_1m.csv";
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = Exec("whatif --model qwen3-4b --sweep memory_bandwidth_gb_per_s=10:1000:10 --sweep int8_tops=5:500:5 "
                      "--sweep context=1024:102400:1024 --format csv --out " + out.string());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(out);
  int64_t lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 1000001);
  EXPECT_LT(s, 20.0);
  std::printf("1,000,000-point sweep with CSV output: %.2f s\n", s);
  std::filesystem::remove(out);
}

TEST(WhatifCli, HtmlReportReferencesItsFigures) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_whatif_html";
  std::filesystem::remove_all(dir);
  const auto r = Exec("whatif --sweep memory_bandwidth_gb_per_s=50:400:50 --sweep int8_tops=10:100:10 --baseline w4 "
                      "--format csv --out /dev/null --html " + dir.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(dir / "index.html");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string html = ss.str();
  for (const char* f : {"figures/roofline.png", "figures/breakdown.png", "figures/sweep_heatmap.png"}) {
    EXPECT_NE(html.find(f), std::string::npos) << f;
    EXPECT_TRUE(std::filesystem::exists(dir / f)) << f;
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "figures/sweep_heatmap.gp"));
  EXPECT_TRUE(std::filesystem::exists(dir / "figures/sweep_heatmap.svg"));
}

TEST(ProbeCli, MeasuresAndWritesALoadableDevice) {
  const auto out = std::filesystem::temp_directory_path() / "lifeline_probe.yaml";
  const auto r = Exec("probe --size-mb 32 --matrix 256 --repeats 2 --kernels off --write " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("memory_bandwidth_gb_per_s"), std::string::npos);
  const auto w = Exec("whatif --device " + out.string() + " --model qwen3-0.6b --top 1");
  EXPECT_EQ(w.status, 0) << w.output;
}

}  // namespace
