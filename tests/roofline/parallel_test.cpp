// Several devices: tensor, pipeline and expert parallelism, KV-capacity
// batch limits and the --best search, each checked against a hand count.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "common/error.hpp"
#include "common/paths.hpp"
#include "roofline/eval/evaluator.hpp"
#include "roofline/eval/parallel.hpp"
#include "roofline/spec/system_spec.hpp"
#include "roofline/whatif/serving.hpp"
#include "tests/error_of.hpp"

namespace lifeline {
namespace {

constexpr double kLink = 100e9;    // bytes/s of the test systems' links
constexpr double kLatency = 1e-6;  // seconds per message

SystemSpec TestSystem(const std::string& device, int64_t count, Topology topo = Topology::kSwitch) {
  SystemSpec s = SingleDeviceSystem(ResolveDeviceSpec(device));
  s.name = "test";
  s.count = count;
  s.interconnect = Interconnect{kLink, kLatency, topo};
  return s;
}

BuildOptions Decode(int64_t batch) {
  BuildOptions o;
  o.fidelity = Fidelity::kExact;
  o.batch = batch;
  return o;
}

TEST(Parallel, CollectiveFormulas) {
  const Interconnect sw{kLink, kLatency, Topology::kSwitch}, ring{kLink, kLatency, Topology::kRing};
  // Ring all-reduce: 2 (n-1)/n of the message per device; 2 (n-1) hops on a ring, 2 through a switch.
  EXPECT_DOUBLE_EQ(AllReduce(8000, 4, sw).bytes, 12000);
  EXPECT_DOUBLE_EQ(AllReduce(8000, 4, sw).seconds, 12000 / kLink + 2 * kLatency);
  EXPECT_DOUBLE_EQ(AllReduce(8000, 4, ring).seconds, 12000 / kLink + 6 * kLatency);
  EXPECT_DOUBLE_EQ(AllReduce(8000, 1, sw).seconds, 0);
  // All-to-all of 8000 bytes over 4: 6000 leave each device; a ring link carries 8000 * 3 / 2.
  EXPECT_DOUBLE_EQ(AllToAll(8000, 4, sw).bytes, 6000);
  EXPECT_DOUBLE_EQ(AllToAll(8000, 4, sw).seconds, 6000 / kLink + kLatency);
  EXPECT_DOUBLE_EQ(AllToAll(8000, 4, ring).seconds, 12000 / kLink + 3 * kLatency);
}

TEST(Parallel, TensorParallelAllReduceBytesPerLayerByHand) {
  const ModelArch a = ResolveModelArch("llama-3.1-8b");  // hidden 4096, 32 layers
  const QuantPlan plan = PresetPlan("bf16", a);
  const SystemSpec sys = TestSystem("nvidia_h100_sxm", 2);
  const ParallelModel m(a, plan, Decode(1), sys, ParallelConfig{2, 1, 1, 0});
  const ParallelStep r = m.Evaluate(4096);
  // One token x 4096 x 2 bytes; each device sends 2 (2-1)/2 of it per all-reduce, two per layer.
  EXPECT_DOUBLE_EQ(r.tp_allreduce_message_bytes, 8192);
  EXPECT_DOUBLE_EQ(r.tp_allreduce_bytes_per_layer, 16384);
  const double one = 8192 / kLink + 2 * kLatency;
  const double argmax = 8.0 / kLink + kLatency;  // all-gather of 2 ranks x 8-byte (logit, id) pairs
  EXPECT_NEAR(r.tp_comm_s, 32 * 2 * one + argmax, 1e-15);
  // Each device holds half the heads, KV heads and FFN columns.
  EXPECT_EQ(m.shard().num_attention_heads, 16);
  EXPECT_EQ(m.shard().num_key_value_heads, 4);
  EXPECT_EQ(m.shard().intermediate_size, 14336 / 2);
  // KV cache per device is half of one device's (8 KV heads -> 4).
  const ParallelModel one_dev(a, plan, Decode(1), SingleDeviceSystem(sys.device), ParallelConfig{});
  EXPECT_DOUBLE_EQ(m.DeviceFootprint(4096).kv_cache_bytes * 2, one_dev.DeviceFootprint(4096).kv_cache_bytes);
  // By hand: 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 bytes x 4096 tokens.
  EXPECT_DOUBLE_EQ(one_dev.DeviceFootprint(4096).kv_cache_bytes, 32.0 * 2 * 8 * 128 * 2 * 4096);
}

TEST(Parallel, TensorParallelNotDividingHeadsIsALocatedError) {
  const ModelArch a = ResolveModelArch("llama-3.1-8b");
  const std::string e = ErrorOf([&] { (void)ShardArch(a, 3, "--tp"); });
  EXPECT_NE(e.find("--tp"), std::string::npos) << e;
  EXPECT_NE(e.find("num_attention_heads = 32"), std::string::npos) << e;
  EXPECT_NE(e.find("1, 2, 4, 8, 16, 32"), std::string::npos) << e;
  // More devices than the system has; EP on a dense model; a batch EP cannot split.
  const SystemSpec sys = TestSystem("nvidia_h100_sxm", 4);
  EXPECT_NE(ErrorOf([&] { CheckParallelConfig(a, {8, 1, 1, 0}, 1, sys, Fidelity::kExact); }).find("has 4"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { CheckParallelConfig(a, {1, 1, 2, 0}, 2, sys, Fidelity::kExact); }).find("no experts"),
            std::string::npos);
  const ModelArch moe = ResolveModelArch("gpt-oss-20b");
  EXPECT_NE(ErrorOf([&] { CheckParallelConfig(moe, {1, 1, 2, 0}, 3, sys, Fidelity::kExact); }).find("--batch"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { CheckParallelConfig(a, {2, 1, 1, 0}, 1, sys, Fidelity::kPaper); }).find("--fidelity exact"),
            std::string::npos);
}

TEST(Parallel, PipelineAtBatchOneIsTheSumOfStagesWithTheBubble) {
  const ModelArch a = ResolveModelArch("llama-3.2-1b");  // 16 layers, hidden 2048
  const QuantPlan plan = PresetPlan("bf16", a);
  const SystemSpec sys = TestSystem("nvidia_h100_sxm", 2);
  const ParallelModel m(a, plan, Decode(1), sys, ParallelConfig{1, 2, 1, 0});
  const ParallelStep r = m.Evaluate(2048);
  ASSERT_EQ(r.stage_s.size(), 2u);
  EXPECT_EQ(r.micro_batches, 1);
  // The token passes both stages one after the other: one device's whole step
  // plus one transfer of 2048 x 2 bytes.
  const double single = EvaluateStep(BuildModelGraph(a, plan, Decode(1)), sys.device, 2048).total_s;
  const double x = 4096 / kLink + kLatency;
  EXPECT_NEAR(r.stage_s[0] + r.stage_s[1], single, 1e-12 * single);
  EXPECT_NEAR(r.step_s, single + x, 1e-12 * single);
  // Each stage idles while the other works: bubble = 1 - mean(stage) / step.
  EXPECT_NEAR(r.bubble_fraction, 1 - (single / 2) / (single + x), 1e-12);
  EXPECT_GT(r.bubble_fraction, 0.45);
  // Two micro-batches keep both stages busy: step = max(sum + x, 2 x slowest stage).
  const ParallelModel m2(a, plan, Decode(2), sys, ParallelConfig{1, 2, 1, 0});
  const ParallelStep r2 = m2.Evaluate(2048);
  EXPECT_EQ(r2.micro_batches, 2);
  const double worst = std::max(r2.stage_s[0], r2.stage_s[1]);
  EXPECT_DOUBLE_EQ(r2.step_s, std::max(r2.stage_s[0] + r2.stage_s[1] + x, 2 * worst));
  EXPECT_DOUBLE_EQ(r2.tokens_per_s, 2 / r2.step_s);
}

TEST(Parallel, ExpertParallelAllToAllBytesByHand) {
  const ModelArch a = ResolveModelArch("gpt-oss-20b");  // hidden 2880, 32 experts, top-4
  const QuantPlan plan = PresetPlan("bf16", a);
  const SystemSpec sys = TestSystem("nvidia_h100_sxm", 2);
  const ParallelModel m(a, plan, Decode(2), sys, ParallelConfig{1, 1, 2, 0});
  const ParallelStep r = m.Evaluate(1024);
  // Each group holds one sequence: 1 token x 4 experts x 2880 x 2 bytes, half of it leaves; dispatch + combine.
  EXPECT_DOUBLE_EQ(r.ep_alltoall_bytes_per_layer, 2 * 0.5 * 4 * 2880 * 2);
  EXPECT_NEAR(r.ep_comm_s, a.num_hidden_layers * 2 * (0.5 * 4 * 2880 * 2 / kLink + kLatency), 1e-15);
  // Each device runs half the routed-expert work of both sequences.
  const ModelGraph both = BuildModelGraph(a, plan, Decode(2));
  double expert_flops_both = 0, expert_flops_device = 0;
  for (auto v : both.order)
    if (IsRoutedExpertOp(both.graph[v])) expert_flops_both += both.graph[v].flops;
  for (auto v : m.stages()[0].order)
    if (IsRoutedExpertOp(m.stages()[0].graph[v])) expert_flops_device += m.stages()[0].graph[v].flops;
  EXPECT_GT(expert_flops_both, 0);
  EXPECT_DOUBLE_EQ(expert_flops_device * 2, expert_flops_both);
}

TEST(Parallel, MlaLatentIsKeptWholeOnEveryTensorParallelRank) {
  const ModelArch a = ResolveModelArch("deepseek-v2-lite");
  ASSERT_TRUE(a.IsMla());
  const QuantPlan plan = PresetPlan("bf16", a);
  const SystemSpec sys = TestSystem("nvidia_h100_sxm", 2);
  const ParallelModel one(a, plan, Decode(1), SingleDeviceSystem(sys.device), ParallelConfig{});
  const ParallelModel two(a, plan, Decode(1), sys, ParallelConfig{2, 1, 1, 0});
  const Footprint f1 = one.DeviceFootprint(4096), f2 = two.DeviceFootprint(4096);
  // The latent (kv_lora_rank + qk_rope_head_dim per token and layer) is read by every head: not split.
  EXPECT_DOUBLE_EQ(f2.kv_cache_bytes, f1.kv_cache_bytes);
  EXPECT_DOUBLE_EQ(f1.kv_cache_bytes,
                   static_cast<double>(a.num_hidden_layers * (a.kv_lora_rank + a.qk_rope_head_dim)) * 2 * 4096);
  EXPECT_EQ(two.shard().num_attention_heads * 2, a.num_attention_heads);
  EXPECT_EQ(two.shard().moe_intermediate_size * 2, a.moe_intermediate_size);
  // Weights: the attention and expert matrices split, norms and the latent projections kept.
  EXPECT_LT(f2.weight_bytes, 0.6 * f1.weight_bytes);
  EXPECT_GT(f2.weight_bytes, 0.5 * f1.weight_bytes);
}

TEST(Parallel, KvCapacityGivesTheLargestBatchByHand) {
  const ModelArch a = ResolveModelArch("llama-3.2-1b");  // 16 layers, 8 KV heads x 64
  const QuantPlan plan = PresetPlan("bf16", a);
  SystemSpec sys = TestSystem("nvidia_h100_sxm", 1);
  const double kv_seq = 16.0 * 2 * 8 * 64 * 2 * 4096;  // one sequence's cache at 4096 tokens
  const ParallelModel ten(a, plan, Decode(10), sys, ParallelConfig{});
  const Footprint f10 = ten.DeviceFootprint(4096);
  EXPECT_DOUBLE_EQ(f10.kv_cache_bytes, 10 * kv_seq);
  // Room for the weights, ten caches, the workspace and half a cache more.
  sys.device.memory_capacity_bytes = f10.weight_bytes + 10.5 * kv_seq + f10.activation_workspace_bytes;
  whatif::Setting s;
  s.arch = a;
  s.plan = plan;
  s.device = sys.device;
  s.decode = Decode(1);
  s.prefill = s.decode;
  s.prefill.phase = Phase::kPrefill;
  s.prefill.prompt_tokens = 128;
  s.context = 4096;
  s.prompt = 128;
  EXPECT_EQ(whatif::LargestBatch(s, sys, ParallelConfig{}, 4096), 10);
  const whatif::ServingPoint over = whatif::EvaluateServing(s, sys, ParallelConfig{}, 11, 0);
  EXPECT_FALSE(over.fits);
  EXPECT_NE(over.why_not_fits.find("KV cache"), std::string::npos) << over.why_not_fits;
}

TEST(Parallel, BestPicksTheHandCheckedWinner) {
  // Two devices, each holding a bit more than half of Llama-3.2-1B's weights:
  // one device alone cannot hold the model; TP=2 halves each step's weight
  // reads; PP=2 at batch 1 is as slow as one device.
  const ModelArch a = ResolveModelArch("llama-3.2-1b");
  const QuantPlan plan = PresetPlan("bf16", a);
  SystemSpec sys = TestSystem("nvidia_h100_sxm", 2);
  const ParallelModel whole(a, plan, Decode(1), SingleDeviceSystem(sys.device), ParallelConfig{});
  const Footprint f = whole.DeviceFootprint(512);
  sys.device.memory_capacity_bytes = 0.75 * f.total_bytes;
  whatif::Setting s;
  s.arch = a;
  s.plan = plan;
  s.device = sys.device;
  s.decode = Decode(1);
  s.prefill = s.decode;
  s.prefill.phase = Phase::kPrefill;
  s.prefill.prompt_tokens = 128;
  s.context = 512;
  s.prompt = 128;
  const whatif::ServingPoint tp2 = whatif::EvaluateServing(s, sys, {2, 1, 1, 0}, 1, 0);
  const whatif::ServingPoint pp2 = whatif::EvaluateServing(s, sys, {1, 2, 1, 0}, 1, 0);
  ASSERT_TRUE(tp2.fits);
  ASSERT_TRUE(pp2.fits);
  ASSERT_LT(tp2.tpot_s, pp2.tpot_s);
  whatif::BestOptions o;
  o.max_batch = 1;
  o.max_tpot_s = 0.5 * (tp2.tpot_s + pp2.tpot_s);  // between the two
  const whatif::BestResult r = whatif::SearchBest(s, sys, o);
  ASSERT_TRUE(r.found());
  const auto& w = r.candidates.front();
  EXPECT_EQ(w.verdict, "winner");
  EXPECT_EQ(w.point.layout.tp, 2);
  EXPECT_EQ(w.point.layout.pp, 1);
  EXPECT_DOUBLE_EQ(w.point.tokens_per_s, 1 / tp2.tpot_s);
  bool single_lost_on_memory = false, pp_lost_on_tpot = false;
  for (const auto& c : r.candidates) {
    const auto& l = c.point.layout;
    if (l.tp == 1 && l.pp == 1) single_lost_on_memory = c.verdict.rfind("does not fit", 0) == 0;
    if (l.tp == 1 && l.pp == 2) pp_lost_on_tpot = c.verdict.rfind("TPOT", 0) == 0;
  }
  EXPECT_TRUE(single_lost_on_memory);
  EXPECT_TRUE(pp_lost_on_tpot);
}

TEST(SystemSpecs, EveryShippedSystemLoads) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(HwspecDir() / "systems")) {
    if (e.path().extension() != ".yaml") continue;
    const SystemSpec s = LoadSystemSpec(e.path());
    EXPECT_GT(s.count, 1) << e.path();
    EXPECT_GT(s.interconnect.link_bytes_per_s, 0) << e.path();
    EXPECT_EQ(ResolveSystemSpec(s.name).name, s.name);
    ++n;
  }
  EXPECT_GE(n, 3);
}

TEST(SystemSpecs, BadKeysAreLocatedErrors) {
  const auto dir = std::filesystem::temp_directory_path() / "lifeline_system_spec_test";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) {
    const auto p = dir / "s.yaml";
    std::ofstream(p) << text;
    return p;
  };
  const std::string head = "name: s\ndevice: nvidia_h100_sxm\ncount: 2\n";
  std::string e = ErrorOf([&] {
    LoadSystemSpec(write(head + "interconnect:\n  link_gb_per_s: 100\n  latency_s: 0\n  topology: mesh\n"));
  });
  EXPECT_NE(e.find("s.yaml:7"), std::string::npos) << e;
  EXPECT_NE(e.find("interconnect.topology"), std::string::npos) << e;
  e = ErrorOf([&] {
    LoadSystemSpec(write(head + "interconnect:\n  link_gbps: 100\n  latency_s: 0\n  topology: ring\n"));
  });
  EXPECT_NE(e.find("link_gb_per_s"), std::string::npos) << e;
  e = ErrorOf([&] { LoadSystemSpec(write(head + "links: 3\ninterconnect:\n  link_gb_per_s: 1\n  latency_s: 0\n  topology: ring\n")); });
  EXPECT_NE(e.find("s.yaml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("links"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lifeline
