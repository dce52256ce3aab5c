#pragma once
// Knowledge distillation of LoRA adapters (METHOD.md §2.4): minimize
// KL(p_teacher || p_student) over full-vocabulary next-token distributions of
// the training sequences. Teacher logits are computed on the fly without
// autograd; only the student's LoRA parameters train (AdamW, warm-up then
// linear/cosine decay, gradient accumulation, clipping), with checkpoint and
// resume, divergence detection and a progress line on a terminal.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "recovery/model/decoder.hpp"

namespace lifeline::recovery {

enum class LrSchedule { kConstant, kLinear, kCosine };

// What the student is trained to minimize.
enum class TrainLoss {
  kKl,            // KL(teacher || student) over the full vocabulary (distillation)
  kCrossEntropy,  // next-token cross-entropy on the data's own tokens (SFT)
};

// Named trainable tensors ("<layer>.lora_A", "model.norm.weight", ...).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct DistillConfig {
  int64_t steps = 800;            // optimizer steps
  int64_t batch = 8;              // sequences per micro-batch
  int64_t seq_len = 256;          // tokens per sequence at most (longer ones are cut)
  int64_t grad_accum = 1;         // micro-batches per optimizer step
  double lr = 2e-3;               // peak learning rate
  double weight_decay = 0.0;      // AdamW decoupled weight decay
  int64_t warmup_steps = 40;      // linear warm-up from 0 to lr
  LrSchedule schedule = LrSchedule::kCosine;  // decay after warm-up (to 0)
  double clip_norm = 1.0;         // gradient-norm clipping (0 = off)
  uint64_t seed = 0;              // batch order: mt19937_64(seed + step)
  double divergence_factor = 10.0;  // stop when loss > factor * best loss so far
  int64_t snapshot_every = 25;    // keep a copy of good adapters every N steps
  std::filesystem::path checkpoint_dir;  // empty = no checkpoints
  int64_t checkpoint_every = 0;   // steps between checkpoints (0 = only at the end)
  bool resume = false;            // continue from checkpoint_dir when it holds one
  int64_t stop_after = 0;         // run at most this many steps in this call (0 = until `steps`);
                                  // the schedule still spans `steps` (time-boxed sessions)
  int progress = -1;              // -1 = auto (stderr is a TTY), 0 = off, 1 = on
  TrainLoss loss = TrainLoss::kKl;
};

struct DistillResult {
  int64_t steps_done = 0;            // optimizer steps completed (incl. resumed ones)
  int64_t start_step = 0;            // step resumed from (0 = fresh)
  double first_loss = 0;             // loss (KL or cross-entropy) of the first step run
  double final_loss = 0;             // mean loss over the last 20 steps run
  double best_loss = 0;              // lowest step loss seen
  bool diverged = false;             // stopped on NaN/Inf or blow-up
  std::string divergence_reason;     // what happened, at which step
  int64_t restored_step = -1;        // step of the adapters restored after divergence
  double seconds = 0;                // wall time of the training loop
  int64_t tokens = 0;                // student tokens processed
  double tokens_per_s = 0;           // tokens / seconds
  std::vector<double> losses;        // per-step loss (nats/token)
};

// Mean KL(teacher || student) per valid position. logits (B, T, V); mask
// (B, T) bool/float, or undefined for all positions.
at::Tensor KlDivergence(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                        const at::Tensor& mask);

// Mean next-token cross-entropy -log p_student(ids[t+1] | ids[..t]) over
// the positions t where both t and t+1 are real tokens. logits (B, T, V),
// ids (B, T) int64, mask (B, T) or undefined for all positions.
at::Tensor NextTokenCrossEntropy(const at::Tensor& student_logits, const at::Tensor& ids,
                                 const at::Tensor& mask);

// Packs sequences (cut to seq_len) into ids (B, T) padded with 0 and a mask
// (B, T) of real positions, on `device`.
std::pair<at::Tensor, at::Tensor> MakeBatch(const std::vector<std::vector<int64_t>>& data,
                                            const std::vector<size_t>& rows, int64_t seq_len,
                                            at::Device device);

// Learning rate at `step` (0-based) under `cfg`.
double LearningRate(const DistillConfig& cfg, int64_t step);

// Trains the LoRA adapters of `student` against `teacher` on `data`.
// ConfigError when the student has no adapters, data is empty, or settings
// are invalid.
DistillResult Distill(Decoder& teacher, Decoder& student,
                      const std::vector<std::vector<int64_t>>& data, const DistillConfig& cfg);

// Trains the tensors `params` of `student` (set to require gradients; all
// others are left as they are) by cfg.loss. The teacher runs only for kKl.
// ConfigError when `params` or data is empty or settings are
// invalid.
DistillResult Train(Decoder& teacher, Decoder& student, const NamedTensors& params,
                    const std::vector<std::vector<int64_t>>& data, const DistillConfig& cfg);

// Copies of named tensors and back (a known-good state).
std::map<std::string, at::Tensor> SnapshotTensors(const NamedTensors& params);
void RestoreTensors(const NamedTensors& params, const std::map<std::string, at::Tensor>& snapshot);

// "constant" / "linear" / "cosine".
LrSchedule ParseLrSchedule(const std::string& s, const std::string& where);
std::string LrScheduleName(LrSchedule s);

// Picks the device: "cpu", or "cuda"/"cuda:N" when CUDA is available
// (ConfigError otherwise).
at::Device ParseDevice(const std::string& s);

}  // namespace lifeline::recovery
