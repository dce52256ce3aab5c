// `lifeline whatif` on a system of devices, end to end through the binary.

#include <gtest/gtest.h>

#include <string>

#include "tests/whatif/test_util.hpp"

namespace {

using lifeline::testing::Exec;
using lifeline::testing::ExecResult;

TEST(ServingCli, SystemPointSweepAndBestEndToEnd) {
  const std::string base = "whatif --system dgx_h100 --model llama-3.1-8b --plan bf16 --fidelity exact ";
  ExecResult r = Exec(base + "--tp 2 --output-tokens 8");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tp_allreduce_bytes_per_layer"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("request_latency_s"), std::string::npos) << r.output;
  r = Exec(base + "--tp 2 --sweep batch=1:1024:x4 --format csv");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("batch,devices,micro_batches,tpot_s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(",no,infeasible: decode needs"), std::string::npos) << r.output;  // batch 1024 at 4k
  r = Exec(base + "--tp 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("num_attention_heads = 32"), std::string::npos) << r.output;
  r = Exec("whatif --system rtx_4090_x4_pcie --model llama-3.2-1b --plan bf16 --fidelity exact --best "
           "--max-tpot-s 0.02 --max-ttft-s 2 --max-batch 16 --format csv");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(",winner"), std::string::npos) << r.output;
  r = Exec("whatif --model llama-3.2-1b --best");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--system"), std::string::npos) << r.output;
}

}  // namespace
