#include "recovery/cli/recover_command.hpp"

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/types.h>

#include "recovery/cli/run_dir.hpp"
#include "recovery/cli/recover_method.hpp"
#include "recovery/data/synthetic.hpp"
#include "recovery/degrade/degrade.hpp"
#include "recovery/eval/accuracy_recovery.hpp"
#include "recovery/eval/gsm8k.hpp"
#include "recovery/eval/lm_eval_tasks.hpp"
#include "recovery/eval/wikitext.hpp"
#include "recovery/model/generate.hpp"
#include "recovery/eval/text_metrics.hpp"
#include "recovery/io/hf_checkpoint.hpp"
#include "recovery/deploy/deploy.hpp"
#include "recovery/lora/init.hpp"
#include "recovery/lora/lora_linear.hpp"
#include "recovery/lora/peft.hpp"
#include "recovery/model/decoder.hpp"
#include "recovery/model/llama2c_checkpoint.hpp"
#include "recovery/model/shared_paths.hpp"
#include "recovery/quant/packed.hpp"
#include "recovery/quant/rtn.hpp"
#include "recovery/tokenizer/tokenizer.hpp"
#include "recovery/train/distill.hpp"
#include "recovery/train/methods.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/progress.hpp"
#include "common/yaml_util.hpp"

namespace lifeline::recovery {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Training allocates and frees the same large activation tensors (16 MiB of
// attention scores per layer at 8 x 256 tokens) every step. glibc serves
// those with mmap/munmap, so every step page-faults them in again (~15% of
// the CPU time of a default run went to the kernel). Keep them on the heap.
void KeepLargeAllocationsOnHeap() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
#endif
}

void Stage(const std::string& msg) {
  if (StderrIsTty()) std::fprintf(stderr, "recover: %s\n", msg.c_str());
}

Checkpoint LoadAnyCheckpoint(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    HfCheckpoint hf = LoadHfCheckpoint(path);
    Checkpoint ck;
    ck.arch = hf.arch;
    ck.tensors = std::move(hf.tensors);
    ck.rope_interleaved = false;
    if (ck.arch.name.empty()) ck.arch.name = path.filename().string();
    return ck;
  }
  return LoadLlama2cCheckpoint(path);
}

fs::path FindTokenizer(const RecoverRecipe& r, const fs::path& model, const ModelArch& arch) {
  if (!r.tokenizer.empty()) return r.tokenizer;
  std::error_code ec;
  if (fs::is_directory(model, ec)) return model;  // LoadTokenizer looks inside
  for (const auto& name : {std::string("tokenizer.bin"), fmt::format("tok{}.bin", arch.vocab_size),
                           std::string("tokenizer.model")}) {
    if (fs::exists(model.parent_path() / name, ec)) return model.parent_path() / name;
  }
  throw ConfigError(fmt::format("{}: no tokenizer found beside the model (tried tokenizer.bin, "
                                "tok{}.bin, tokenizer.model). hint: pass --tokenizer FILE",
                                model.string(), arch.vocab_size));
}

LogitsFn MakeLogitsFn(Decoder& model, at::Device device) {
  return [model, device](const at::Tensor& ids) mutable {
    torch::NoGradGuard no_grad;
    return model->forward(ids.to(device));
  };
}

nlohmann::json Metric(double teacher, double quantized, double recovered, const std::string& name) {
  nlohmann::json j;
  j["teacher"] = teacher;
  j["quantized"] = quantized;
  j["recovered"] = recovered;
  const auto ar = ComputeAccuracyRecovery(teacher, quantized, recovered, DirectionOfMetric(name));
  if (ar.ar_pct) {
    j["ar_pct"] = *ar.ar_pct;
  } else {
    j["ar_pct"] = nullptr;
    j["ar_reason"] = ar.reason;
  }
  return j;
}

struct Evaluation {
  TextMetrics text;                        // vs the teacher
  std::map<std::string, double> tasks;     // "<task>.<metric>"
  nlohmann::json task_results;             // per task: items scored and sizes
  double seconds = 0;
};

Evaluation Evaluate(Decoder& model, Decoder& teacher, const std::vector<std::vector<int64_t>>& docs,
                    const Tokenizer& tok, const RecoverRecipe& r, at::Device device) {
  const auto t0 = Clock::now();
  model->eval();
  Evaluation e;
  const LogitsFn student_fn = MakeLogitsFn(model, device);
  const LogitsFn teacher_fn = MakeLogitsFn(teacher, device);
  e.text = EvaluateText(docs, student_fn, &teacher_fn, r.eval_batch);
  LoglikelihoodOptions opts;
  opts.batch = r.eval_batch;
  opts.max_length = model->arch().max_position_embeddings;
  for (const auto& task : r.tasks) {
    TaskResult tr;
    if (task == "gsm8k") {
      Gsm8kOptions g;
      g.max_length = opts.max_length;
      g.add_bos = opts.add_bos;
      tr = RunGsm8k(tok, MakeGenerateFn(model, tok.EosId()), g, r.task_limit);
    } else if (task == "wikitext") {
      tr = RunWikitext(tok, student_fn, opts, r.task_limit);
    } else {
      tr = RunLmEvalTask(task, tok, student_fn, opts, r.task_limit);
    }
    for (const auto& [metric, value] : tr.metrics) e.tasks[task + "." + metric] = value;
    e.task_results[task] = {{"items", tr.items}};
    for (const auto& [name, value] : tr.sizes) e.task_results[task][name] = value;
  }
  e.seconds = Since(t0);
  return e;
}

nlohmann::json EvalJson(const Evaluation& e) {
  nlohmann::json j;
  j["perplexity"] = e.text.perplexity;
  j["kl_to_teacher"] = e.text.kl_per_token;
  j["top1_agreement"] = e.text.top1_agreement;
  for (const auto& [k, v] : e.tasks) j[k] = v;
  j["seconds"] = e.seconds;
  return j;
}

std::string DataKey(const RecoverRecipe& r, const std::string& model) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", model, r.data, r.data_skip, r.samples,
                     r.sample_len, r.temperature, r.top_k, r.walk_vocab, r.seed);
}

std::string BaselineKey(const RecoverRecipe& r, const std::string& model) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", model, r.bits, r.group, r.scheme,
                     fmt::join(r.layers, ","), r.eval_text, r.eval_limit,
                     fmt::join(r.tasks, ","), r.task_limit, fmt::join(r.degrade, ","), r.noise_rel_l2,
                     r.noise_l2, r.dtype, r.bitflip_rate, r.seed);
}

// Weights that are NaN or infinite make every metric meaningless (KL 0,
// top-1 1.0 between two broken models): refuse them, naming the tensor.
void CheckWeightsFinite(const Checkpoint& ck, const fs::path& model_path) {
  std::vector<std::string> bad;
  for (const auto& [name, t] : ck.tensors) {
    if (!at::isFloatingType(t.scalar_type())) continue;
    const int64_t n = (~at::isfinite(t)).sum().item<int64_t>();
    if (n > 0) bad.push_back(fmt::format("tensor '{}' ({} of {} values)", name, n, t.numel()));
  }
  if (!bad.empty()) {
    throw ConfigError(fmt::format("{}: non-finite weights (NaN or inf) in {}; expected finite weights. "
                                  "hint: the checkpoint is corrupt or was saved after a diverged "
                                  "training run",
                                  model_path.string(), fmt::join(bad, ", ")));
  }
}

}  // namespace

nlohmann::json RunRecovery(const RecoverRecipe& r, RecoveryCache* cache) {
  const auto t_total = Clock::now();
  ValidateRecipe(r, [](const std::string&) { return std::string("recipe"); });
  CheckOutPath(r.out);
  KeepLargeAllocationsOnHeap();
  nlohmann::json timings;
  // Threads and device first: both apply to everything below.
  const int64_t threads =
      r.threads > 0 ? r.threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  at::set_num_threads(static_cast<int>(threads));
  const at::Device device = ParseDevice(r.device);
  const QuantScheme scheme = ParseQuantScheme(r.scheme, "--scheme");
  const LoraInit init = ParseLoraInit(r.init, "--init");
  const LrSchedule schedule = ParseLrSchedule(r.schedule, "--schedule");
  const RecoveryMethod method = ParseRecoveryMethod(r.method, "--method");
  const QuantConfig qcfg{r.bits, r.group, scheme};

  // 1. Model, tokenizer.
  auto t = Clock::now();
  const fs::path model_path = r.model.empty() ? Stories260kModelPath() : fs::path(r.model);
  Stage("loading " + model_path.string());
  const Checkpoint ck = LoadAnyCheckpoint(model_path);
  const fs::path tok_path = FindTokenizer(r, model_path, ck.arch);
  const std::unique_ptr<Tokenizer> tok = LoadTokenizer(tok_path);
  if (tok->VocabSize() > ck.arch.vocab_size ||
      (ck.rope_interleaved && tok->VocabSize() != ck.arch.vocab_size)) {
    throw ConfigError(fmt::format("{}: tokenizer vocabulary ({} tokens) does not match the model "
                                  "{} ({} embeddings). hint: pass the model's own tokenizer",
                                  tok_path.string(), tok->VocabSize(), model_path.string(),
                                  ck.arch.vocab_size));
  }
  CheckWeightsFinite(ck, model_path);
  if (r.sample_len > ck.arch.max_position_embeddings) {
    throw MakeConfigError("--sample-len", "sample_len",
                          fmt::format("{} tokens exceed the context of {} ({} tokens, "
                                      "max_position_embeddings)",
                                      r.sample_len, model_path.string(), ck.arch.max_position_embeddings),
                          fmt::format("at most {}", ck.arch.max_position_embeddings));
  }
  const std::optional<QuantPlan> deploy_plan =
      r.deploy_plan.empty() ? std::nullopt : std::optional(ResolveDeployPlan(r.deploy_plan, ck.arch));
  Decoder teacher = BuildDecoder(ck);
  Decoder student = BuildDecoder(ck);
  teacher->to(device);
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  timings["load_s"] = Since(t);

  // 2. Degrade (quantize, perturb, ...).
  t = Clock::now();
  const DegradationResult degradation = ApplyDegradations(student, r.layers, MakeDegradeConfig(r), "--layers");
  const std::vector<LayerQuantReport>& qreport = degradation.quantized;
  student->to(device);
  nlohmann::json qjson;
  qjson["bits"] = r.bits;
  qjson["group"] = r.group;
  qjson["scheme"] = QuantSchemeName(scheme);
  qjson["patterns"] = r.layers;
  int64_t packed_total = 0;
  for (const auto& l : qreport) {
    const int64_t bytes = PackedWeightBytes(l.rows, l.cols, qcfg);
    packed_total += bytes;
    qjson["layers"].push_back({{"name", l.name}, {"rows", l.rows}, {"cols", l.cols},
                               {"rel_error", l.rel_error}, {"packed_bytes", bytes}});
  }
  qjson["packed_bytes_total"] = packed_total;
  timings["degrade_s"] = Since(t);

  // 3. Baseline evaluation: teacher and quantized model.
  const fs::path eval_path = r.eval_text.empty() ? TinyStoriesValPath() : fs::path(r.eval_text);
  const auto stories = LoadStories(eval_path, r.eval_limit);
  const auto docs = TokenizeStories(stories, *tok, ck.arch.max_position_embeddings);
  int64_t eval_predictions = 0;  // tokens the evaluation predicts (each document's after the first)
  for (const auto& d : docs) eval_predictions += std::max<int64_t>(0, static_cast<int64_t>(d.size()) - 1);
  if (eval_predictions == 0) {
    throw MakeConfigError(eval_path.string(), r.eval_text.empty() ? "eval_text (default)" : "--eval-text / eval_text",
                          fmt::format("{} stories with no token to predict: perplexity, KL and top-1 "
                                      "would be undefined",
                                      stories.size()),
                          "a text file of stories separated by blank lines, at least one of two tokens or more");
  }
  const std::string bkey = BaselineKey(r, model_path.string());
  nlohmann::json baseline;
  if (cache && cache->baseline.count(bkey)) {
    baseline = cache->baseline.at(bkey);
    timings["eval_baseline_s"] = 0.0;
  } else {
    t = Clock::now();
    Stage(fmt::format("evaluating teacher and quantized model on {} documents", docs.size()));
    Evaluation te = Evaluate(teacher, teacher, docs, *tok, r, device);
    Evaluation qe = Evaluate(student, teacher, docs, *tok, r, device);
    baseline["teacher"] = EvalJson(te);
    baseline["quantized"] = EvalJson(qe);
    baseline["documents"] = qe.text.documents;
    baseline["tokens"] = qe.text.tokens;
    if (cache) cache->baseline[bkey] = baseline;
    timings["eval_baseline_s"] = Since(t);
  }

  // 4. Training data.
  t = Clock::now();
  const std::string dkey = DataKey(r, model_path.string());
  std::vector<std::vector<int64_t>> data;
  nlohmann::json djson;
  djson["source"] = r.data;
  if (cache && cache->data.count(dkey)) {
    data = cache->data.at(dkey);
  } else if (r.data == "synthetic") {
    Stage(fmt::format("generating {} synthetic sequences of up to {} tokens", r.samples, r.sample_len));
    SyntheticConfig sc;
    sc.samples = r.samples;
    sc.max_len = r.sample_len;
    sc.temperature = r.temperature;
    sc.top_k = r.top_k;
    sc.walk_vocab = r.walk_vocab;
    sc.batch = r.gen_batch;
    sc.seed = r.seed;
    ProgressLine line;
    data = GenerateSynthetic(teacher, sc, {tok->BosId(), tok->EosId()},
                             [&line](int64_t done, int64_t total) {
                               const std::string text = fmt::format("generate {}/{}", done, total);
                               if (done == total) line.Finish(text);
                               else line.Update(text);
                             });
  } else {
    const fs::path file = r.data.substr(5);
    auto texts = LoadStories(file, r.data_skip + r.samples);
    if (static_cast<int64_t>(texts.size()) <= r.data_skip) {
      throw ConfigError(fmt::format("--data {}: {} stories, none left after skipping {}", r.data,
                                    texts.size(), r.data_skip));
    }
    texts.erase(texts.begin(), texts.begin() + r.data_skip);
    data = TokenizeStories(texts, *tok, r.sample_len);
  }
  if (cache) cache->data[dkey] = data;
  int64_t data_tokens = 0;
  for (const auto& s : data) data_tokens += static_cast<int64_t>(s.size());
  djson["sequences"] = data.size();
  djson["tokens"] = data_tokens;
  djson["mean_length"] = data.empty() ? 0.0 : static_cast<double>(data_tokens) / data.size();
  CreateOutDir(r.out);
  if (r.save_data) {
    SaveSequences(fs::path(r.out) / "train_data.bin", data, ck.arch.vocab_size, r.seed);
    djson["file"] = "train_data.bin";
  }
  timings["data_s"] = Since(t);

  // 5. The method: adapters or all parameters, then training.
  t = Clock::now();
  at::manual_seed(r.seed);
  const MethodSetup setup = SetUpMethod(student, method, r, qcfg);
  LoraConfig lcfg;
  lcfg.rank = r.rank;
  lcfg.alpha = r.alpha;
  lcfg.dropout = r.dropout;
  lcfg.init = init;
  lcfg.targets = r.LoraTargets();
  const std::vector<std::string> adapted =
      UsesAdapters(method) ? AttachLora(student, lcfg, "--lora-targets") : std::vector<std::string>{};
  std::vector<std::string> quantized_layers;
  for (const auto& l : qreport) quantized_layers.push_back(l.name);
  BaseGrid grid;
  const auto init_reports =
      UsesAdapters(method)
          ? InitializeAdapters(student, teacher, init, &qcfg, quantized_layers, static_cast<int>(r.loftq_iters), &grid)
          : std::vector<AdapterInitReport>{};
  if (deploy_plan) ExportDeployed(student, *deploy_plan, DeployVariant::kAttached, grid);  // refuse before training
  student->to(device);
  DistillConfig dc;
  dc.steps = r.steps;
  dc.batch = r.batch;
  dc.seq_len = r.sample_len;
  dc.grad_accum = r.grad_accum;
  dc.lr = r.lr;
  dc.weight_decay = r.weight_decay;
  dc.warmup_steps = r.warmup;
  dc.schedule = schedule;
  dc.clip_norm = r.clip;
  dc.seed = r.seed;
  dc.checkpoint_dir = fs::path(r.out) / "train_state";
  dc.checkpoint_every = r.checkpoint_every;
  dc.resume = r.resume;
  dc.loss = MethodLoss(method);
  CheckOrRecordFingerprint(r);
  const NamedTensors trainable = UsesAdapters(method) ? LoraParameters(student) : AllParameters(student);
  const DistillResult dr = Train(teacher, student, trainable, data, dc);
  if (setup.ste_layers.size() > 0) BakeSteQuant(student);  // deploy the on-grid weights
  int64_t trainable_params = 0;
  for (const auto& [name, p] : trainable) trainable_params += p.numel();
  timings["train_s"] = Since(t);
  nlohmann::json tjson;
  tjson["adapted_layers"] = adapted;
  tjson["init"]["name"] = LoraInitName(init);
  for (const auto& ir : init_reports) {
    nlohmann::json lj = {{"name", ir.name},
                         {"base_change_rel", ir.base_change_rel},
                         {"step0_error_rel", ir.step0_error_rel},
                         {"degraded_error_rel", ir.degraded_error_rel}};
    if (!ir.loftq_error_per_iter.empty()) {
      lj["loftq_error_per_iter"] = ir.loftq_error_per_iter;
      lj["loftq_kept_iter"] = ir.loftq_kept_iter;
    }
    tjson["init"]["layers"].push_back(lj);
  }
  tjson["method"] = RecoveryMethodName(method);
  tjson["loss"] = dc.loss == TrainLoss::kKl ? "kl_teacher_student" : "next_token_cross_entropy";
  if (method == RecoveryMethod::kSftLora)
    tjson["labels"] = r.data == "synthetic" ? "the synthetic sequences' own tokens (sampled from the teacher)"
                                            : "the text's own tokens";
  if (method == RecoveryMethod::kLlmQat) {
    tjson["qat_ste"] = r.qat_ste;
    tjson["ste_layers"] = setup.ste_layers;
    tjson["weights_on_grid"] = !setup.ste_layers.empty();
  }
  tjson["trainable_parameters"] = trainable_params;
  tjson["steps_done"] = dr.steps_done;
  tjson["start_step"] = dr.start_step;
  tjson["first_loss"] = dr.first_loss;
  tjson["final_loss"] = dr.final_loss;
  tjson["best_loss"] = dr.best_loss;
  tjson["diverged"] = dr.diverged;
  if (dr.diverged) {
    tjson["divergence_reason"] = dr.divergence_reason;
    tjson["restored_step"] = dr.restored_step;
  }
  tjson["tokens"] = dr.tokens;
  tjson["tokens_per_s"] = dr.tokens_per_s;
  tjson["seconds"] = dr.seconds;
  std::vector<double> curve;
  for (size_t i = 0; i < dr.losses.size(); i += 10) curve.push_back(dr.losses[i]);
  tjson["loss_every_10_steps"] = curve;

  // 6. Evaluate the recovered model; export adapters.
  t = Clock::now();
  Stage("evaluating the recovered model");
  const Evaluation re = Evaluate(student, teacher, docs, *tok, r, device);
  timings["eval_recovered_s"] = Since(t);
  if (UsesAdapters(method)) SavePeftAdapters(student, fs::path(r.out) / "adapters", model_path.string());
  else SaveTrainedWeights(student, fs::path(r.out) / "model.safetensors");

  nlohmann::json out;
  out["model"] = model_path.string();
  out["tokenizer"] = tok_path.string();
  out["device"] = device.str();
  out["threads"] = threads;
  out["recipe"] = RecipeToJson(r);
  out["seeds"] = {{"seed", r.seed},
                  {"synthetic_mt19937_64", r.seed},
                  {"synthetic_torch_generator", r.seed ^ 0x9e3779b97f4a7c15ULL},
                  {"lora_init_torch_manual_seed", r.seed},
                  {"degradation", "splitmix64 of (seed, kind position, layer position)"},
                  {"batch_order", "mt19937_64(seed * 1000003 + step)"}};
  out["method"] = RecoveryMethodName(method);
  out["trainable_params"] = trainable_params;
  out["train_tokens"] = data_tokens;
  out["degradation"] = degradation.report;
  if (!qreport.empty()) out["quantization"] = qjson;
  out["data"] = djson;
  out["training"] = tjson;
  out["eval"] = {{"text", eval_path.string()},
                 {"documents", baseline["documents"]},
                 {"tokens", baseline["tokens"]},
                 {"tasks", r.tasks},
                 {"task_limit", r.task_limit},
                 {"task_results", re.task_results}};
  const auto& te = baseline["teacher"];
  const auto& qe = baseline["quantized"];
  const nlohmann::json rj = EvalJson(re);
  nlohmann::json metrics;
  for (const auto& [name, value] : rj.items()) {
    if (name == "seconds") continue;
    metrics[name] = Metric(te.at(name).get<double>(), qe.at(name).get<double>(),
                           value.get<double>(), name);
  }
  out["metrics"] = metrics;
  if (deploy_plan) {
    t = Clock::now();
    Stage("evaluating the deployed model (plan " + deploy_plan->name + ")");
    out["deploy"] = RunDeployVariants(student, *deploy_plan, grid, metrics, [&](Decoder& m) {
      nlohmann::json mj;
      const nlohmann::json ej = EvalJson(Evaluate(m, teacher, docs, *tok, r, device));  // outlives items()
      for (const auto& [name, value] : ej.items()) {
        if (name != "seconds")
          mj[name] = Metric(te.at(name).get<double>(), qe.at(name).get<double>(), value.get<double>(), name);
      }
      return mj;
    });
    timings["eval_deploy_s"] = Since(t);
  }
  out[UsesAdapters(method) ? "adapters" : "weights"] = UsesAdapters(method) ? "adapters/" : "model.safetensors";
  timings["total_s"] = Since(t_total);
  out["timings"] = timings;
  WriteJson(fs::path(r.out) / "recovery.json", out);

  const auto& ppl = metrics["perplexity"];
  std::fprintf(stderr,
               "recover: perplexity teacher %.3f, quantized %.3f, recovered %.3f (AR %s) in %.0f s"
               " -> %s\n",
               ppl["teacher"].get<double>(), ppl["quantized"].get<double>(),
               ppl["recovered"].get<double>(),
               ppl["ar_pct"].is_null() ? "undefined"
                                       : fmt::format("{:.1f}%", ppl["ar_pct"].get<double>()).c_str(),
               Since(t_total), (fs::path(r.out) / "recovery.json").string().c_str());
  if (dr.diverged) {
    throw Error(fmt::format("recover: training diverged ({}); {} keeps the adapters of step {}, the last "
                            "good ones, and {} records the run (training.diverged). hint: lower --lr "
                            "(now {}) or --alpha (now {}), or raise --warmup",
                            dr.divergence_reason, (fs::path(r.out) / "adapters").string(), dr.restored_step,
                            (fs::path(r.out) / "recovery.json").string(), r.lr, r.alpha));
  }
  return out;
}

void AddRecoverCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "recover",
      "Recover-LoRA: degrade layers (--degrade: quant by default, noise, dtype, bitflip), generate synthetic data "
      "from the teacher, recover (--method: LoRA adapters distilled by KL by default, llm-qat, sft-lora), evaluate "
      "(--tasks, --deploy-plan); writes DIR/recovery.json and DIR/adapters/ (PEFT)");
  struct Opts {
    RecoverRecipe r;
    std::string recipe_file, ablation_file, layers, lora_targets, tasks, degrade;
    bool overwrite = false;
  };
  auto o = std::make_shared<Opts>();
  RecoverRecipe& r = o->r;
  cmd->add_option("--recipe", o->recipe_file, "YAML recipe (keys as the flags, with underscores); "
                                              "flags given override it")->check(CLI::ExistingFile);
  cmd->add_option("--ablation", o->ablation_file,
                  "removed: batches of recovery runs are sweep matrices (lifeline sweep FILE)");
  cmd->add_option("--model", r.model, "llama2.c .bin or Hugging Face directory (default: shared stories260K)");
  cmd->add_option("--tokenizer", r.tokenizer, "tokenizer file (default: found beside the model)");
  cmd->add_option("--bits", r.bits, "weight bits of the quantized layers (2, 3, 4)")->capture_default_str();
  cmd->add_option("--group", r.group, "quantization group size")->capture_default_str();
  cmd->add_option("--scheme", r.scheme, "asym or sym")->capture_default_str();
  cmd->add_option("--layers", o->layers,
                  "layer patterns every degradation applies to (default mlp.gate_proj,mlp.up_proj)");
  AddDegradeMethodOptions(cmd, r, o->degrade);
  cmd->add_option("--rank", r.rank, "LoRA rank")->capture_default_str();
  cmd->add_option("--alpha", r.alpha, "LoRA alpha")->capture_default_str();
  cmd->add_option("--dropout", r.dropout, "LoRA dropout")->capture_default_str();
  cmd->add_option("--lora-targets", o->lora_targets, "layer patterns for adapters (default: --layers)");
  cmd->add_option("--init", r.init, "LoRA init: standard, olora or loftq (frozen base stays on the grid)")
      ->capture_default_str();
  cmd->add_option("--loftq-iters", r.loftq_iters, "loftq: alternating quantize/SVD iterations")
      ->capture_default_str();
  cmd->add_option("--deploy-plan", r.deploy_plan,
                  "after training, evaluate the model deployed per this roofline plan (preset or YAML): "
                  "adapters attached and merged");
  cmd->add_option("--data", r.data, "synthetic or text:FILE")->capture_default_str();
  cmd->add_option("--data-skip", r.data_skip, "text data: stories to skip first")->capture_default_str();
  cmd->add_option("--samples", r.samples, "training sequences")->capture_default_str();
  cmd->add_option("--sample-len", r.sample_len, "tokens per training sequence")->capture_default_str();
  cmd->add_option("--temperature", r.temperature, "synthetic sampling temperature")->capture_default_str();
  cmd->add_option("--top-k", r.top_k, "synthetic sampling top-k")->capture_default_str();
  cmd->add_flag("--walk-vocab", r.walk_vocab, "synthetic first tokens walk the vocabulary");
  cmd->add_option("--steps", r.steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", r.batch, "sequences per step")->capture_default_str();
  cmd->add_option("--grad-accum", r.grad_accum, "micro-batches per step")->capture_default_str();
  cmd->add_option("--lr", r.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", r.warmup, "warm-up steps")->capture_default_str();
  cmd->add_option("--schedule", r.schedule, "constant, linear or cosine")->capture_default_str();
  cmd->add_option("--clip", r.clip, "gradient-norm clipping (0 = off)")->capture_default_str();
  cmd->add_option("--checkpoint-every", r.checkpoint_every, "steps between training checkpoints");
  cmd->add_flag("--resume", r.resume, "resume training from DIR/train_state");
  cmd->add_option("--seed", r.seed, "seed of data, init and batch order")->capture_default_str();
  cmd->add_option("--device", r.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", r.threads, "CPU threads (0 = hardware cores)")->capture_default_str();
  cmd->add_option("--eval-text", r.eval_text, "text file of stories separated by blank lines "
                                               "(default: shared TinyStories validation)");
  cmd->add_option("--eval-limit", r.eval_limit, "first N stories (0 = all)")->capture_default_str();
  cmd->add_option("--tasks", o->tasks, "lm-eval tasks, comma-separated (e.g. hellaswag,piqa)");
  cmd->add_option("--task-limit", r.task_limit, "items per task (0 = all)")->capture_default_str();
  cmd->add_option("--out", r.out, "output directory (refused when it holds files, unless --resume or "
                                  "--overwrite)")->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite,
                "write into an --out directory that already holds files (replacing its results)");
  cmd->callback([cmd, o]() {
    if (!o->ablation_file.empty()) {
      throw MakeConfigError("--ablation", "ablation", "recover no longer runs batches of recipes",
                            "a sweep matrix with a recovery: section",
                            fmt::format("use `lifeline sweep <file> --store STORE` and `lifeline report "
                                        "--store STORE` (e.g. experiments/ablations/stories260k_quick.yaml); "
                                        "{} is no longer read",
                                        o->ablation_file));
    }
    // Recipe first, then the flags given explicitly on top of it.
    RecoverRecipe merged;
    if (!o->recipe_file.empty()) merged = LoadRecipe(o->recipe_file);
    const RecoverRecipe& f = o->r;
    auto given = [cmd](const char* flag) { return cmd->get_option(flag)->count() > 0; };
    if (given("--model")) merged.model = f.model;
    if (given("--tokenizer")) merged.tokenizer = f.tokenizer;
    if (given("--bits")) merged.bits = f.bits;
    if (given("--group")) merged.group = f.group;
    if (given("--scheme")) merged.scheme = f.scheme;
    if (given("--layers")) merged.layers = SplitPatterns(o->layers);
    if (given("--rank")) merged.rank = f.rank;
    if (given("--alpha")) merged.alpha = f.alpha;
    if (given("--dropout")) merged.dropout = f.dropout;
    if (given("--lora-targets")) merged.lora_targets = SplitPatterns(o->lora_targets);
    if (given("--init")) merged.init = f.init;
    if (given("--loftq-iters")) merged.loftq_iters = f.loftq_iters;
    if (given("--deploy-plan")) merged.deploy_plan = f.deploy_plan;
    if (given("--data")) merged.data = f.data;
    if (given("--data-skip")) merged.data_skip = f.data_skip;
    if (given("--samples")) merged.samples = f.samples;
    if (given("--sample-len")) merged.sample_len = f.sample_len;
    if (given("--temperature")) merged.temperature = f.temperature;
    if (given("--top-k")) merged.top_k = f.top_k;
    if (given("--walk-vocab")) merged.walk_vocab = f.walk_vocab;
    if (given("--steps")) merged.steps = f.steps;
    if (given("--batch")) merged.batch = f.batch;
    if (given("--grad-accum")) merged.grad_accum = f.grad_accum;
    if (given("--lr")) merged.lr = f.lr;
    if (given("--warmup")) merged.warmup = f.warmup;
    if (given("--schedule")) merged.schedule = f.schedule;
    if (given("--clip")) merged.clip = f.clip;
    if (given("--checkpoint-every")) merged.checkpoint_every = f.checkpoint_every;
    if (given("--resume")) merged.resume = f.resume;
    if (given("--seed")) merged.seed = f.seed;
    if (given("--device")) merged.device = f.device;
    if (given("--threads")) merged.threads = f.threads;
    if (given("--eval-text")) merged.eval_text = f.eval_text;
    if (given("--eval-limit")) merged.eval_limit = f.eval_limit;
    if (given("--tasks")) merged.tasks = SplitPatterns(o->tasks);
    if (given("--task-limit")) merged.task_limit = f.task_limit;
    if (given("--out")) merged.out = f.out;
    MergeDegradeMethodFlags(cmd, f, o->degrade, o->recipe_file, merged);
    // Flags pass the same range checks as the recipe keys they set.
    std::vector<std::string> given_keys;
    for (const std::string& k : RecipeKeys()) {
      const CLI::Option* opt = cmd->get_option_no_throw(RecipeFlag(k));
      if (opt && opt->count() > 0) given_keys.push_back(k);
    }
    ValidateRecipe(merged, RecipeFlag, given_keys);
    // Never mix a new run into an old one's files without being asked.
    std::error_code ec;
    if (!merged.resume && !o->overwrite && fs::is_directory(merged.out, ec) &&
        !fs::is_empty(merged.out, ec)) {
      throw MakeConfigError("--out", "out", fmt::format("directory '{}' already holds files", merged.out),
                            "a new or empty output directory",
                            "pass --overwrite to replace its results, --resume to continue its training, "
                            "or choose another --out");
    }
    RunRecovery(merged);
  });
}

}  // namespace lifeline::recovery
