#include "recovery/lora/init.hpp"

#include <set>

#include <fmt/format.h>
#include <torch/types.h>

#include "common/error.hpp"

namespace lifeline::recovery {

namespace {

double RelNorm(const at::Tensor& diff, const at::Tensor& ref) {
  return (diff.norm() / ref.norm().clamp_min(1e-30)).item<double>();
}

// Quantizes `w` and returns the base on the grid with its codes.
void QuantizeInto(const at::Tensor& w, const QuantConfig& q, const std::string& where, AdapterInit* out) {
  out->codes = QuantizeRtn(w, q, where);
  out->base = Dequantize(out->codes, q.group);
}

}  // namespace

bool OnGrid(const at::Tensor& w, const GroupQuantized& q, const QuantConfig& cfg) {
  if (!q.codes.defined() || w.sizes() != q.codes.sizes()) return false;
  if (q.codes.max().item<int64_t>() > (1 << cfg.bits) - 1) return false;
  if (q.zero.max().item<int64_t>() > (1 << cfg.bits) - 1) return false;
  const at::Tensor deq = Dequantize(q, cfg.group);
  return at::equal(w.to(at::kCPU).to(at::kFloat).contiguous(), deq.contiguous());
}

AdapterInit OloraInit(const at::Tensor& w_degraded, const QuantConfig& quant, int64_t rank,
                      double scaling, const std::string& where) {
  LIFELINE_CHECK(w_degraded.dim() == 2, "weight must be 2-D");
  torch::NoGradGuard no_grad;
  const at::Tensor w = w_degraded.detach().to(at::kCPU).to(at::kDouble);  // (out, in)
  auto [q, r] = at::linalg_qr(w, "reduced");  // q (out, k), r (k, in), k = min(out, in)
  AdapterInit out;
  out.lora_B = q.narrow(1, 0, rank).to(at::kFloat).contiguous();  // (out, r)
  out.lora_A = r.narrow(0, 0, rank).to(at::kFloat).contiguous();  // (r, in)
  const at::Tensor residual =
      (w - at::matmul(out.lora_B.to(at::kDouble), out.lora_A.to(at::kDouble)) * scaling).to(at::kFloat);
  QuantizeInto(residual, quant, where, &out);
  return out;
}

AdapterInit LoftqInit(const at::Tensor& w_full, const QuantConfig& quant, int64_t rank, double scaling,
                      int iters, const std::string& where) {
  LIFELINE_CHECK(w_full.dim() == 2, "weight must be 2-D");
  if (iters < 1)
    throw MakeConfigError("--loftq-iters", "loftq_iters", fmt::format("{} iterations", iters),
                          "at least 1 (LoftQ's paper uses 5)");
  torch::NoGradGuard no_grad;
  const at::Tensor w = w_full.detach().to(at::kCPU).to(at::kFloat);  // (out, in)
  AdapterInit out, cur;
  at::Tensor ba = at::zeros_like(w);  // s·B·A, (out, in)
  for (int t = 0; t < iters; ++t) {
    QuantizeInto(w - ba, quant, where, &cur);
    auto [u, s, vh] = at::linalg_svd((w - cur.base).to(at::kDouble), /*full_matrices=*/false);
    // s·B·A = U_r S_r V_r^T, split evenly: B = U_r √(S_r/s), A = √(S_r/s) V_r^T.
    const at::Tensor root = at::sqrt(s.narrow(0, 0, rank) / scaling);
    cur.lora_B = (u.narrow(1, 0, rank) * root.unsqueeze(0)).to(at::kFloat).contiguous();   // (out, r)
    cur.lora_A = (root.unsqueeze(1) * vh.narrow(0, 0, rank)).to(at::kFloat).contiguous();  // (r, in)
    ba = at::matmul(cur.lora_B, cur.lora_A) * scaling;
    const double error = (w - cur.base - ba).norm().item<double>();
    out.loftq_error_per_iter.push_back(error);
    // RTN recomputes each group's scale and zero point, so the iteration need
    // not descend (stories260K gate/up at r = 32: 2.52 -> 2.75 over 5
    // iterations): keep the iterate with the lowest error.
    if (t == 0 || error < out.loftq_error_per_iter[out.loftq_kept_iter - 1]) {
      out.base = cur.base;
      out.codes = cur.codes;
      out.lora_A = cur.lora_A;
      out.lora_B = cur.lora_B;
      out.loftq_kept_iter = t + 1;
    }
  }
  return out;
}

std::vector<AdapterInitReport> InitializeAdapters(Decoder& student, const Decoder& teacher, LoraInit init,
                                                  const QuantConfig* quant,
                                                  const std::vector<std::string>& quantized_layers,
                                                  int loftq_iters, BaseGrid* grid) {
  const std::set<std::string> quantized(quantized_layers.begin(), quantized_layers.end());
  std::map<std::string, std::shared_ptr<LinearBase>> full;
  for (const auto& [name, lin] : teacher->Linears()) full[name] = lin;
  const auto layers = LoraLayers(student);
  const std::string init_name = LoraInitName(init);
  if (init != LoraInit::kStandard) {
    if (!quant)
      throw MakeConfigError("--init", "init",
                            fmt::format("{} re-quantizes the frozen base with the run's quantizer, and this run's "
                                        "degradation is not a quantization alone (there is no grid to keep the "
                                        "base on)",
                                        init_name),
                            "--init standard with this degradation",
                            "use --init standard, or --degrade quant for olora/loftq");
    for (const auto& [name, l] : layers) {
      if (!quantized.count(name))
        throw MakeConfigError("--init", "init",
                              fmt::format("{} needs every adapted layer to be quantized, and {} is not (it is in "
                                          "--lora-targets but this run's degradation does not quantize it): its "
                                          "deployed weight is not on a grid, which {} would need",
                                          init_name, name, init_name),
                              "--lora-targets within the quantized --layers",
                              "use --init standard, or adapt only quantized layers");
    }
  }
  if (grid && quant) grid->quant = *quant;
  std::vector<AdapterInitReport> reports;
  torch::NoGradGuard no_grad;
  for (const auto& [name, l] : layers) {
    auto it = full.find(name);
    LIFELINE_CHECK(it != full.end(), "teacher lacks layer " + name);
    at::Tensor base = l->base()->BaseWeight();  // the degraded weight, written in place
    const at::Tensor w_full = it->second->BaseWeight().to(at::kCPU).to(at::kFloat);
    const at::Tensor w_deg = base.to(at::kCPU).to(at::kFloat).clone();
    AdapterInitReport rep;
    rep.name = name;
    rep.degraded_error_rel = RelNorm(w_deg - w_full, w_full);
    const double s = l->config().Scaling();
    const int64_t rank = l->config().rank;
    if (init == LoraInit::kOlora || init == LoraInit::kLoftq) {
      // The degraded weight must be the quantizer's own output, or the init
      // would deploy a base that drops the rest of the degradation.
      if (!OnGrid(w_deg, QuantizeRtn(w_full, *quant, name), *quant))
        throw MakeConfigError("--init", "init",
                              fmt::format("the degraded weight of {} is not the quantizer's RTN of the "
                                          "full-precision weight (the degradation does more than quantize it), so "
                                          "{} has no grid that keeps that degradation in the frozen base",
                                          name, init_name),
                              "--init standard, or --degrade quant alone with olora/loftq",
                              "use --init standard with this degradation");
      const AdapterInit ai = init == LoraInit::kOlora ? OloraInit(w_deg, *quant, rank, s, name)
                                                      : LoftqInit(w_full, *quant, rank, s, loftq_iters, name);
      base.copy_(ai.base);
      l->lora_A().copy_(ai.lora_A);
      l->lora_B().copy_(ai.lora_B);
      rep.loftq_error_per_iter = ai.loftq_error_per_iter;
      rep.loftq_kept_iter = ai.loftq_kept_iter;
      if (grid) grid->codes[name] = ai.codes;
    }
    const at::Tensor step0 =
        base.to(at::kCPU).to(at::kFloat) + at::matmul(l->lora_B(), l->lora_A()).to(at::kCPU) * s;
    rep.base_change_rel = RelNorm(base.to(at::kCPU).to(at::kFloat) - w_deg, w_deg);
    rep.step0_error_rel = RelNorm(step0 - w_full, w_full);
    reports.push_back(std::move(rep));
  }
  // Quantized layers whose base the init left alone: their codes are the
  // quantizer's codes of the full-precision weight when those decode to it.
  if (grid && quant) {
    for (const auto& name : quantized_layers) {
      if (grid->codes.count(name)) continue;
      auto it = full.find(name);
      LIFELINE_CHECK(it != full.end(), "teacher lacks layer " + name);
      const auto& lins = student->Linears();
      for (const auto& [n, lin] : lins) {
        if (n != name) continue;
        GroupQuantized q = QuantizeRtn(it->second->BaseWeight().to(at::kCPU).to(at::kFloat), *quant, name);
        if (OnGrid(lin->BaseWeight(), q, *quant)) grid->codes[name] = std::move(q);
      }
    }
  }
  return reports;
}

}  // namespace lifeline::recovery
