#include "recovery/train/distill.hpp"


#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

#include "recovery/io/safetensors.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/progress.hpp"

namespace lifeline::recovery {

at::Tensor KlDivergence(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                        const at::Tensor& mask) {
  const at::Tensor log_pt = at::log_softmax(teacher_logits.to(at::kFloat), -1);  // (B, T, V)
  const at::Tensor log_ps = at::log_softmax(student_logits.to(at::kFloat), -1);  // (B, T, V)
  const at::Tensor kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1);              // (B, T)
  if (!mask.defined()) return kl.mean();
  const at::Tensor m = mask.to(kl.dtype());
  return (kl * m).sum() / m.sum().clamp_min(1.0);
}

at::Tensor NextTokenCrossEntropy(const at::Tensor& student_logits, const at::Tensor& ids,
                                 const at::Tensor& mask) {
  const int64_t T = ids.size(1);
  const at::Tensor logp = at::log_softmax(student_logits.narrow(1, 0, T - 1).to(at::kFloat), -1);  // (B, T-1, V)
  const at::Tensor nll = -logp.gather(-1, ids.narrow(1, 1, T - 1).unsqueeze(-1)).squeeze(-1);     // (B, T-1)
  if (!mask.defined()) return nll.mean();
  const at::Tensor m = mask.narrow(1, 1, T - 1).to(nll.dtype());  // target position is a real token
  return (nll * m).sum() / m.sum().clamp_min(1.0);
}

std::map<std::string, at::Tensor> SnapshotTensors(const NamedTensors& params) {
  std::map<std::string, at::Tensor> s;
  for (const auto& [name, t] : params) s[name] = t.detach().clone();
  return s;
}

void RestoreTensors(const NamedTensors& params, const std::map<std::string, at::Tensor>& snapshot) {
  torch::NoGradGuard g;
  for (const auto& [name, t] : params) t.copy_(snapshot.at(name));
}

std::pair<at::Tensor, at::Tensor> MakeBatch(const std::vector<std::vector<int64_t>>& data,
                                            const std::vector<size_t>& rows, int64_t seq_len,
                                            at::Device device) {
  int64_t T = 0;
  for (size_t r : rows) T = std::max<int64_t>(T, std::min<int64_t>(data[r].size(), seq_len));
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor ids = at::zeros({B, T}, at::kLong);
  at::Tensor mask = at::zeros({B, T}, at::kFloat);
  auto* p = ids.data_ptr<int64_t>();
  auto* m = mask.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = data[rows[b]];
    const int64_t n = std::min<int64_t>(s.size(), T);
    std::copy(s.begin(), s.begin() + n, p + b * T);
    std::fill(m + b * T, m + b * T + n, 1.0f);
  }
  return {ids.to(device), mask.to(device)};
}

double LearningRate(const DistillConfig& cfg, int64_t step) {
  if (step < cfg.warmup_steps) return cfg.lr * static_cast<double>(step + 1) / cfg.warmup_steps;
  const double span = std::max<int64_t>(1, cfg.steps - cfg.warmup_steps);
  const double frac = std::min(1.0, static_cast<double>(step - cfg.warmup_steps) / span);
  switch (cfg.schedule) {
    case LrSchedule::kConstant: return cfg.lr;
    case LrSchedule::kLinear: return cfg.lr * (1.0 - frac);
    case LrSchedule::kCosine: return cfg.lr * 0.5 * (1.0 + std::cos(M_PI * frac));
  }
  return cfg.lr;
}

namespace {

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  return t >= 60 ? fmt::format("{}m{:02d}s", t / 60, t % 60) : fmt::format("{}s", t);
}

void SaveCheckpoint(const std::filesystem::path& dir, const NamedTensors& params,
                    torch::optim::AdamW& opt, int64_t step, const DistillResult& r) {
  std::filesystem::create_directories(dir);
  std::map<std::string, at::Tensor> adapters;
  for (const auto& [name, t] : params) adapters[name] = t.detach();
  WriteSafetensors(dir / "adapters.safetensors", adapters);
  torch::save(opt, (dir / "optimizer.pt").string());
  nlohmann::json j;
  j["step"] = step;
  j["best_loss"] = r.best_loss;
  j["losses"] = r.losses;
  WriteFileAtomic(dir / "state.json", j.dump() + "\n");
}

// Returns the step to continue from (0 when there is nothing to resume).
int64_t LoadCheckpoint(const std::filesystem::path& dir, const NamedTensors& params,
                       torch::optim::AdamW& opt, DistillResult& r) {
  if (!std::filesystem::exists(dir / "state.json")) return 0;
  nlohmann::json j;
  try {
    std::ifstream(dir / "state.json") >> j;
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("{}: corrupt training state: {}", (dir / "state.json").string(),
                                  e.what()));
  }
  const auto adapters = ReadSafetensors(dir / "adapters.safetensors");
  {
    torch::NoGradGuard g;
    for (const auto& [name, t] : params) {
      auto it = adapters.find(name);
      if (it == adapters.end() || it->second.sizes() != t.sizes()) {
        throw ConfigError(fmt::format("{}: checkpoint tensors do not match the model (tensor {}); "
                                      "hint: resume with the same method and LoRA settings",
                                      dir.string(), name));
      }
      t.copy_(it->second);
    }
  }
  torch::load(opt, (dir / "optimizer.pt").string());
  r.best_loss = j.value("best_loss", 0.0);
  r.losses = j.value("losses", std::vector<double>{});
  return j.at("step").get<int64_t>();
}

}  // namespace

DistillResult Distill(Decoder& teacher, Decoder& student,
                      const std::vector<std::vector<int64_t>>& data, const DistillConfig& cfg) {
  const NamedTensors params = LoraParameters(student);
  if (params.empty()) {
    throw ConfigError("distillation: the student has no LoRA adapters. hint: attach adapters "
                      "(--lora-targets) before training");
  }
  return Train(teacher, student, params, data, cfg);
}

DistillResult Train(Decoder& teacher, Decoder& student, const NamedTensors& named,
                    const std::vector<std::vector<int64_t>>& data, const DistillConfig& cfg) {
  if (data.empty()) throw ConfigError("distillation: no training sequences");
  if (cfg.steps <= 0 || cfg.batch <= 0 || cfg.seq_len < 2 || cfg.grad_accum <= 0 || cfg.lr <= 0 ||
      cfg.warmup_steps < 0 || cfg.divergence_factor <= 1) {
    throw ConfigError(fmt::format("distillation: invalid settings (steps {}, batch {}, seq_len {}, "
                                  "grad_accum {}, lr {}, warmup {}, divergence factor {})",
                                  cfg.steps, cfg.batch, cfg.seq_len, cfg.grad_accum, cfg.lr,
                                  cfg.warmup_steps, cfg.divergence_factor));
  }
  if (named.empty()) throw ConfigError("training: no trainable tensors");
  std::vector<at::Tensor> params;
  for (const auto& [name, t] : named) {
    t.set_requires_grad(true);
    params.push_back(t);
  }
  const at::Device dev = student->device();
  teacher->eval();
  student->train();
  torch::optim::AdamW opt(params,
                          torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.weight_decay));
  DistillResult r;
  int64_t step0 = 0;
  if (cfg.resume && !cfg.checkpoint_dir.empty()) step0 = LoadCheckpoint(cfg.checkpoint_dir, named, opt, r);
  r.start_step = step0;
  ProgressLine line(cfg.progress < 0   ? ProgressLine::Mode::kTerminal
                    : cfg.progress > 0 ? ProgressLine::Mode::kAlways
                                       : ProgressLine::Mode::kOff);
  auto good = SnapshotTensors(named);
  int64_t good_step = step0;
  if (step0 == 0) r.best_loss = std::numeric_limits<double>::infinity();

  const auto t0 = std::chrono::steady_clock::now();
  int64_t step = step0;
  const int64_t end = cfg.stop_after > 0 ? std::min(cfg.steps, step0 + cfg.stop_after) : cfg.steps;
  for (; step < end; ++step) {
    const double lr = LearningRate(cfg, step);
    for (auto& group : opt.param_groups()) group.options().set_lr(lr);
    std::mt19937_64 rng(cfg.seed * 1000003ULL + static_cast<uint64_t>(step));
    std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
    // Adapters are only known good once a loss computed with them is healthy:
    // take a candidate snapshot now, promote it after this step's loss.
    std::map<std::string, at::Tensor> candidate;
    if (cfg.snapshot_every > 0 && (step - step0) % cfg.snapshot_every == 0) candidate = SnapshotTensors(named);
    opt.zero_grad();
    double step_loss = 0;
    for (int64_t micro = 0; micro < cfg.grad_accum; ++micro) {
      std::vector<size_t> rows(static_cast<size_t>(cfg.batch));
      for (auto& row : rows) row = pick(rng);
      auto [ids, mask] = MakeBatch(data, rows, cfg.seq_len, dev);  // (B, T), (B, T)
      at::Tensor loss;
      if (cfg.loss == TrainLoss::kCrossEntropy) {
        loss = NextTokenCrossEntropy(student->forward(ids), ids, mask);
      } else {
        at::Tensor teacher_logits;
        {
          torch::NoGradGuard no_grad;
          teacher_logits = teacher->forward(ids);  // (B, T, V)
        }
        loss = KlDivergence(teacher_logits, student->forward(ids), mask);
      }
      (cfg.grad_accum > 1 ? loss / static_cast<double>(cfg.grad_accum) : loss).backward();
      step_loss += loss.item<double>() / static_cast<double>(cfg.grad_accum);
      r.tokens += static_cast<int64_t>(mask.sum().item<double>());
    }
    if (!std::isfinite(step_loss) ||
        (std::isfinite(r.best_loss) && step_loss > cfg.divergence_factor * r.best_loss)) {
      r.diverged = true;
      r.divergence_reason = !std::isfinite(step_loss)
                                ? fmt::format("loss is {} at step {}", step_loss, step)
                                : fmt::format("loss {:.4g} at step {} exceeds {} x the best {:.4g}",
                                              step_loss, step, cfg.divergence_factor, r.best_loss);
      RestoreTensors(named, good);
      r.restored_step = good_step;
      break;
    }
    if (!candidate.empty()) {
      good = std::move(candidate);
      good_step = step;
    }
    if (cfg.clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, cfg.clip_norm);
    opt.step();
    if (step == step0) r.first_loss = step_loss;
    r.losses.push_back(step_loss);
    r.best_loss = std::min(r.best_loss, step_loss);
    if (!cfg.checkpoint_dir.empty() && cfg.checkpoint_every > 0 &&
        (step + 1) % cfg.checkpoint_every == 0) {
      SaveCheckpoint(cfg.checkpoint_dir, named, opt, step + 1, r);
    }
    if (line.Due()) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double done = static_cast<double>(step + 1 - step0);
      line.Update(fmt::format("train step {}/{}  {} {:.4f}  lr {:.2e}  {:.0f} tok/s  ETA {}", step + 1, cfg.steps,
                              cfg.loss == TrainLoss::kKl ? "KL" : "CE", step_loss, lr, static_cast<double>(r.tokens) / el,
                              FormatDuration(el / done * static_cast<double>(cfg.steps - step - 1))));
    }
  }
  r.steps_done = step;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0;
  const size_t tail = std::min<size_t>(20, r.losses.size());
  r.final_loss = tail ? std::accumulate(r.losses.end() - tail, r.losses.end(), 0.0) / tail : 0;
  if (!cfg.checkpoint_dir.empty() && !r.diverged) {
    SaveCheckpoint(cfg.checkpoint_dir, named, opt, r.steps_done, r);
  }
  line.Finish();
  std::fprintf(stderr, "train: %lld steps in %s, %.0f tok/s, %s %.4f -> %.4f%s\n",
               static_cast<long long>(r.steps_done - r.start_step), FormatDuration(r.seconds).c_str(),
               r.tokens_per_s, cfg.loss == TrainLoss::kKl ? "KL" : "CE", r.first_loss, r.final_loss,
               r.diverged ? (" (diverged: " + r.divergence_reason + ")").c_str() : "");
  return r;
}

LrSchedule ParseLrSchedule(const std::string& s, const std::string& where) {
  if (s == "constant") return LrSchedule::kConstant;
  if (s == "linear") return LrSchedule::kLinear;
  if (s == "cosine") return LrSchedule::kCosine;
  throw ConfigError(fmt::format("{}: unknown schedule '{}'; expected constant, linear or cosine",
                                where, s));
}

std::string LrScheduleName(LrSchedule s) {
  switch (s) {
    case LrSchedule::kConstant: return "constant";
    case LrSchedule::kLinear: return "linear";
    case LrSchedule::kCosine: return "cosine";
  }
  return "?";
}

at::Device ParseDevice(const std::string& s) {
  if (s == "cpu") return at::Device(at::kCPU);
  if (s.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw ConfigError(fmt::format("--device {}: CUDA is not available in this build or on this "
                                    "machine. hint: use --device cpu",
                                    s));
    }
    try {
      return at::Device(s);
    } catch (const c10::Error&) {
      throw ConfigError(fmt::format("--device: cannot parse '{}'; expected cpu, cuda or cuda:N", s));
    }
  }
  throw ConfigError(fmt::format("--device: unknown device '{}'; expected cpu, cuda or cuda:N", s));
}

}  // namespace lifeline::recovery
