#pragma once
// Adapter initialisations that keep the frozen base on the deployed grid.
//
// The frozen base of every adapted layer is the weight that would be
// deployed: the degraded weight itself (standard init), or a weight the init
// re-quantizes with the run's quantizer so it is still exactly on that
// quantizer's grid (olora, loftq). `svd`, which moved the top-r part of the
// weight into the adapters and left a float residual as the base, is refused.
//
//   standard  A ~ Kaiming-uniform(a = √5), B = 0 (PEFT's default); base = W_deg
//   olora     PEFT's OLoRA: W_deg = Q·R; B = Q[:, :r], A = R[:r];
//             base = quant(W_deg − s·B·A)                     (s = α / r)
//   loftq     LoftQ (Li et al. 2023), T iterations from B·A = 0:
//             Q = quant(W − s·B·A); s·B·A = top-r SVD of (W − Q); base = Q
//             where W is the full-precision (teacher's) weight.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/lora/lora_linear.hpp"
#include "recovery/model/decoder.hpp"
#include "recovery/quant/rtn.hpp"

namespace lifeline::recovery {

// One layer's initialisation: frozen base, adapters and the base's codes.
struct AdapterInit {
  at::Tensor base;          // (out, in) float32, = Dequantize(codes) exactly
  GroupQuantized codes;     // the base on the quantizer's grid
  at::Tensor lora_A;        // (r, in)
  at::Tensor lora_B;        // (out, r)
  // LoftQ: ||W − (Q + s·B·A)||_F after each iteration (empty for OLoRA), and
  // the iteration (1-based) whose Q, B, A are kept: the one with the lowest.
  std::vector<double> loftq_error_per_iter;
  int loftq_kept_iter = 0;
};

// OLoRA on the degraded weight `w_degraded` (out, in); the residual is
// re-quantized with `quant`. `where` names the layer in errors.
AdapterInit OloraInit(const at::Tensor& w_degraded, const QuantConfig& quant, int64_t rank,
                      double scaling, const std::string& where);

// LoftQ on the full-precision weight `w_full` (out, in), `iters` >= 1.
AdapterInit LoftqInit(const at::Tensor& w_full, const QuantConfig& quant, int64_t rank,
                      double scaling, int iters, const std::string& where);

// Per-layer record of what the init did (recovery.json `training.init`).
struct AdapterInitReport {
  std::string name;                      // "model.layers.0.mlp.gate_proj"
  double base_change_rel = 0;            // ||base − W_deg||_F / ||W_deg||_F
  double step0_error_rel = 0;            // ||base + s·B·A − W||_F / ||W||_F (W: teacher's)
  double degraded_error_rel = 0;         // ||W_deg − W||_F / ||W||_F
  std::vector<double> loftq_error_per_iter;  // absolute Frobenius norms
  int loftq_kept_iter = 0;                   // 1-based; 0 when not loftq
};

// The grid the frozen bases of the quantized layers lie on, by layer name,
// with the quantizer that made it; what a deployment packs.
struct BaseGrid {
  QuantConfig quant;
  std::map<std::string, GroupQuantized> codes;
};

// Initialises the adapters of every LoRA layer of `student` (attached with
// standard init) by `init`. `teacher` holds the full-precision weights under
// the same names. `quant` is the run's quantizer, or null when the run's
// degradation is not a quantization (then olora/loftq are refused);
// `quantized_layers` are the layers it quantized. For olora/loftq every
// adapted layer must be one of them, and its degraded weight exactly the
// quantizer's output on the full-precision weight (ConfigError otherwise:
// a further degradation such as noise would be dropped from the base). Fills `grid` with
// the codes of every quantized layer's base (for standard init: the codes of
// the degraded weight, checked to decode to it exactly).
std::vector<AdapterInitReport> InitializeAdapters(Decoder& student, const Decoder& teacher,
                                                  LoraInit init, const QuantConfig* quant,
                                                  const std::vector<std::string>& quantized_layers,
                                                  int loftq_iters, BaseGrid* grid);

// True when `w` equals Dequantize(q) bit for bit and every code lies in
// [0, 2^bits − 1]: the weight is exactly on the grid.
bool OnGrid(const at::Tensor& w, const GroupQuantized& q, const QuantConfig& cfg);

}  // namespace lifeline::recovery
