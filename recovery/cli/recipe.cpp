#include "recovery/cli/recipe.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/yaml_util.hpp"
#include "recovery/eval/lm_eval_tasks.hpp"

namespace lifeline::recovery {

namespace {

std::vector<std::string> StringList(StrictMap& m, const std::string& key) {
  const YAML::Node n = m.Node(key);
  std::vector<std::string> out;
  try {
    if (n.IsScalar()) {
      std::string s = n.as<std::string>();
      size_t start = 0;
      while (start <= s.size()) {
        const size_t comma = s.find(',', start);
        std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        const auto b = part.find_first_not_of(" \t");
        const auto e = part.find_last_not_of(" \t");
        if (b != std::string::npos) out.push_back(part.substr(b, e - b + 1));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (n.IsSequence()) {
      for (const auto& item : n) out.push_back(item.as<std::string>());
    } else {
      throw YAML::Exception(n.Mark(), "not a list");
    }
  } catch (const YAML::Exception&) {
    throw MakeConfigError(Where(m.file(), n), m.KeyPath(key), "not a list of strings",
                          "a list like [mlp.gate_proj, mlp.up_proj] or a comma-separated string");
  }
  return out;
}

bool Bool(StrictMap& m, const std::string& key, bool current) {
  const auto v = m.OptionalBool(key);
  return v ? *v : current;
}

std::string Num(double v) { return fmt::format("{}", v); }

}  // namespace

int64_t MaxRecipeThreads() {
  return std::max<int64_t>(256, static_cast<int64_t>(std::thread::hardware_concurrency()));
}

std::string RecipeFlag(const std::string& key) {
  std::string f = "--" + key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}

std::optional<RecipeProblem> CheckRecipeKey(const RecoverRecipe& r, const std::string& key) {
  using P = std::optional<RecipeProblem>;
  auto int_range = [](int64_t v, int64_t lo, int64_t hi, const std::string& what) -> P {
    if (v < lo || v > hi)
      return RecipeProblem{fmt::format("{} is out of range", v),
                           fmt::format("{} from {} to {}", what, lo, hi), ""};
    return std::nullopt;
  };
  auto real_range = [](double v, double lo, bool lo_open, double hi, const std::string& hint) -> P {
    if (!std::isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
      return RecipeProblem{fmt::format("{} is {}", Num(v), std::isfinite(v) ? "out of range" : "not a finite number"),
                           fmt::format("a number {} {} and <= {}", lo_open ? ">" : ">=", Num(lo), Num(hi)), hint};
    return std::nullopt;
  };
  auto one_of = [](const std::string& v, std::initializer_list<const char*> ok) -> P {
    for (const char* o : ok)
      if (v == o) return std::nullopt;
    return RecipeProblem{fmt::format("'{}' is not supported", v), fmt::format("one of: {}", fmt::join(ok, ", ")), ""};
  };
  constexpr int64_t kBig = int64_t{1} << 40;
  if (key == "bits") return int_range(r.bits, 2, 4, "a bit width");
  if (key == "group") return int_range(r.group, 1, 1 << 20, "a group size");
  if (key == "scheme") return one_of(r.scheme, {"asym", "sym"});
  if (key == "layers" && r.layers.empty())
    return RecipeProblem{"empty list", "at least one layer pattern (e.g. mlp.gate_proj)", ""};
  if (key == "degrade") {
    if (r.degrade.empty()) return RecipeProblem{"empty list", "one or more of: quant, noise, dtype, bitflip", ""};
    for (size_t i = 0; i < r.degrade.size(); ++i) {
      if (auto p = one_of(r.degrade[i], {"quant", "noise", "dtype", "bitflip"}))
        return RecipeProblem{fmt::format("unknown degradation '{}'", r.degrade[i]), p->expected, ""};
      for (size_t j = 0; j < i; ++j)
        if (r.degrade[j] == r.degrade[i])
          return RecipeProblem{fmt::format("'{}' is listed twice", r.degrade[i]), "each kind at most once",
                               "its strength is set by its own key"};
    }
    return std::nullopt;
  }
  if (key == "noise_rel_l2") return real_range(r.noise_rel_l2, 0, false, 1e6, "0 with noise_l2 set");
  if (key == "noise_l2") {
    if (auto p = real_range(r.noise_l2, 0, false, 1e12, "")) return p;
    if (r.noise_l2 > 0 && r.noise_rel_l2 > 0)
      return RecipeProblem{"given together with noise_rel_l2", "one noise target: noise_rel_l2 or noise_l2",
                           "set only one of them"};
    if (r.noise_l2 == 0 && r.noise_rel_l2 == 0)
      return RecipeProblem{"no noise target", "noise_rel_l2 > 0 or noise_l2 > 0", ""};
    return std::nullopt;
  }
  if (key == "dtype") return one_of(r.dtype, {"fp16", "bf16", "fp8-e4m3", "fp8-e5m2"});
  if (key == "bitflip_rate") return real_range(r.bitflip_rate, 0, true, 0.5, "bit positions are drawn without replacement");
  if (key == "method") return one_of(r.method, {"recover-lora", "llm-qat", "sft-lora"});
  if (key == "qat_ste" && r.qat_ste) {
    if (r.method != "llm-qat")
      return RecipeProblem{"qat_ste is set with method " + r.method, "method llm-qat",
                           "the straight-through estimator trains the quantized weights themselves"};
    if (r.degrade.empty() || r.degrade.back() != "quant")
      return RecipeProblem{"qat_ste without quant as the last degradation",
                           "degrade ending in quant (the grid the weights are kept on)", ""};
  }
  if (key == "rank") return int_range(r.rank, 1, 65536, "a LoRA rank");
  if (key == "alpha") return real_range(r.alpha, 0, true, kMaxRecipeAlpha, "");
  if (key == "dropout") {
    if (!std::isfinite(r.dropout) || r.dropout < 0 || r.dropout >= 1)
      return RecipeProblem{fmt::format("{} is not a probability below 1", Num(r.dropout)), "a number in [0, 1)", ""};
    return std::nullopt;
  }
  if (key == "init" && r.init == "svd")
    return RecipeProblem{"'svd' is no longer supported: it left a float residual as the frozen base instead of the "
                         "quantized weight that would be deployed",
                         "standard, olora or loftq",
                         "use olora or loftq, which keep the frozen base on the quantizer's grid"};
  if (key == "init") return one_of(r.init, {"standard", "olora", "loftq"});
  if (key == "loftq_iters") return int_range(r.loftq_iters, 1, 1000, "an iteration count");
  if (key == "data" && r.data != "synthetic" && (r.data.rfind("text:", 0) != 0 || r.data.size() == 5))
    return RecipeProblem{fmt::format("unknown data source '{}'", r.data), "synthetic or text:FILE", ""};
  if (key == "data_skip") return int_range(r.data_skip, 0, kBig, "a story count");
  if (key == "samples") return int_range(r.samples, 1, kMaxRecipeSamples, "a sequence count");
  if (key == "sample_len") return int_range(r.sample_len, 2, kMaxRecipeSampleLen, "a token count");
  if (key == "temperature") return real_range(r.temperature, 0, true, 100, "");
  if (key == "top_k") return int_range(r.top_k, 0, kBig, "a top-k (0 = all tokens)");
  if (key == "gen_batch") return int_range(r.gen_batch, 1, kMaxRecipeBatch, "a batch size");
  if (key == "steps") return int_range(r.steps, 1, kMaxRecipeSteps, "a step count");
  if (key == "batch") return int_range(r.batch, 1, kMaxRecipeBatch, "a batch size");
  if (key == "grad_accum") return int_range(r.grad_accum, 1, kMaxRecipeBatch, "a micro-batch count");
  if (key == "lr")
    return real_range(r.lr, 0, true, kMaxRecipeLr, "AdamW diverges at once above 1; LoRA recovery uses about 1e-4 to 1e-2");
  if (key == "warmup") return int_range(r.warmup, 0, kMaxRecipeSteps, "a step count");
  if (key == "schedule") return one_of(r.schedule, {"constant", "linear", "cosine"});
  if (key == "clip") return real_range(r.clip, 0, false, 1e9, "0 turns clipping off");
  if (key == "weight_decay") return real_range(r.weight_decay, 0, false, 1e9, "");
  if (key == "checkpoint_every") return int_range(r.checkpoint_every, 0, kMaxRecipeSteps, "a step count (0 = at the end)");
  if (key == "threads") return int_range(r.threads, 0, MaxRecipeThreads(), "a thread count (0 = hardware cores)");
  if (key == "eval_limit") return int_range(r.eval_limit, 0, kBig, "a story count (0 = all)");
  if (key == "eval_batch") return int_range(r.eval_batch, 1, kMaxRecipeBatch, "a batch size");
  if (key == "task_limit") return int_range(r.task_limit, 0, kBig, "an item count (0 = all)");
  if (key == "tasks") {
    std::vector<std::string> known;
    for (const TaskInfo& t : LmEvalTasks()) known.push_back(t.name);
    for (const std::string& task : r.tasks)
      if (std::find(known.begin(), known.end(), task) == known.end())
        return RecipeProblem{"unknown evaluation task '" + task + "'",
                             fmt::format("a comma-separated list of {}", fmt::join(known, ", ")), ""};
  }
  if (key == "device" && r.device.empty()) return RecipeProblem{"empty", "cpu, cuda or cuda:N", ""};
  if (key == "out" && r.out.empty()) return RecipeProblem{"empty", "an output directory", ""};
  return std::nullopt;
}

void ValidateRecipe(const RecoverRecipe& r, const std::function<std::string(const std::string&)>& where,
                    const std::vector<std::string>& keys) {
  for (const std::string& k : keys.empty() ? RecipeKeys() : keys) {
    if (const auto p = CheckRecipeKey(r, k)) throw MakeConfigError(where(k), k, p->problem, p->expected, p->hint);
  }
}

nlohmann::json TrainingFingerprint(const RecoverRecipe& r) {
  nlohmann::json j = RecipeToJson(r);
  for (const char* k : {"resume", "out", "threads", "device", "checkpoint_every", "eval_text", "eval_limit",
                        "eval_batch", "tasks", "task_limit", "save_data"})
    j.erase(k);
  return j;
}

const std::vector<std::string>& RecipeKeys() {
  static const std::vector<std::string> keys = {
      "model", "tokenizer", "bits", "group", "scheme", "layers", "rank", "alpha", "dropout",
      "degrade", "noise_rel_l2", "noise_l2", "dtype", "bitflip_rate", "method", "qat_ste",
      "lora_targets", "init", "loftq_iters", "data", "data_skip", "samples", "sample_len", "temperature",
      "top_k", "walk_vocab", "gen_batch", "steps", "batch", "grad_accum", "lr", "warmup",
      "schedule", "clip", "weight_decay", "checkpoint_every", "resume", "seed", "device",
      "threads", "eval_text", "eval_limit", "eval_batch", "tasks", "task_limit", "out",
      "save_data", "deploy_plan"};
  return keys;
}

const std::vector<std::string>& AdapterKeys() {
  static const std::vector<std::string> keys = {"rank", "alpha", "dropout", "lora_targets", "init", "loftq_iters"};
  return keys;
}

std::optional<RecipeProblem> AdapterKeyProblem(const RecoverRecipe& r, const std::string& key) {
  if (r.method != "llm-qat") return std::nullopt;
  return RecipeProblem{fmt::format("an adapter option with method llm-qat"),
                       "no adapter keys (rank, alpha, dropout, lora_targets, init, loftq_iters): llm-qat trains "
                       "every parameter of the degraded model and attaches no adapters",
                       "remove it, or use method recover-lora or sft-lora"};
}

void ApplyRecipeYaml(const YAML::Node& node, const std::string& file, const std::string& path,
                     RecoverRecipe& r) {
  if (!node.IsMap()) {
    throw MakeConfigError(Where(file, node), path.empty() ? "(root)" : path, "not a mapping",
                          "a mapping of recipe keys", fmt::format("keys: {}", fmt::join(RecipeKeys(), ", ")));
  }
  StrictMap m(node, file, path);
  auto str = [&](const char* k, std::string& v) { if (m.Has(k)) v = m.String(k); };
  auto pos = [&](const char* k, int64_t& v) { if (m.Has(k)) v = m.PositiveInteger(k); };
  auto nonneg = [&](const char* k, int64_t& v) {
    if (!m.Has(k)) return;
    const int64_t x = m.Integer(k);
    if (x < 0) throw MakeConfigError(m.WhereKey(k), m.KeyPath(k), "negative value", "an integer >= 0");
    v = x;
  };
  auto num = [&](const char* k, double& v) { if (m.Has(k)) v = m.Number(k); };
  str("model", r.model);
  str("tokenizer", r.tokenizer);
  if (m.Has("bits")) {
    const int64_t b = m.Integer("bits");
    if (b < 2 || b > 4) throw MakeConfigError(m.WhereKey("bits"), m.KeyPath("bits"), fmt::format("unsupported bit width {}", b), "2, 3 or 4");
    r.bits = static_cast<int>(b);
  }
  pos("group", r.group);
  str("scheme", r.scheme);
  if (m.Has("layers")) r.layers = StringList(m, "layers");
  if (m.Has("degrade")) r.degrade = StringList(m, "degrade");
  num("noise_rel_l2", r.noise_rel_l2);
  num("noise_l2", r.noise_l2);
  if (m.Has("noise_l2") && !m.Has("noise_rel_l2")) r.noise_rel_l2 = 0;  // the absolute target replaces the default
  str("dtype", r.dtype);
  num("bitflip_rate", r.bitflip_rate);
  str("method", r.method);
  r.qat_ste = Bool(m, "qat_ste", r.qat_ste);
  pos("rank", r.rank);
  if (m.Has("alpha")) r.alpha = m.PositiveNumber("alpha");
  num("dropout", r.dropout);
  if (m.Has("lora_targets")) r.lora_targets = StringList(m, "lora_targets");
  str("init", r.init);
  pos("loftq_iters", r.loftq_iters);
  str("data", r.data);
  nonneg("data_skip", r.data_skip);
  pos("samples", r.samples);
  pos("sample_len", r.sample_len);
  if (m.Has("temperature")) r.temperature = m.PositiveNumber("temperature");
  nonneg("top_k", r.top_k);
  r.walk_vocab = Bool(m, "walk_vocab", r.walk_vocab);
  pos("gen_batch", r.gen_batch);
  pos("steps", r.steps);
  pos("batch", r.batch);
  pos("grad_accum", r.grad_accum);
  if (m.Has("lr")) r.lr = m.PositiveNumber("lr");
  nonneg("warmup", r.warmup);
  str("schedule", r.schedule);
  num("clip", r.clip);
  num("weight_decay", r.weight_decay);
  nonneg("checkpoint_every", r.checkpoint_every);
  r.resume = Bool(m, "resume", r.resume);
  if (m.Has("seed")) {
    const int64_t s = m.Integer("seed");
    if (s < 0) throw MakeConfigError(m.WhereKey("seed"), m.KeyPath("seed"), "negative seed", "an integer >= 0");
    r.seed = static_cast<uint64_t>(s);
  }
  str("device", r.device);
  nonneg("threads", r.threads);
  str("eval_text", r.eval_text);
  nonneg("eval_limit", r.eval_limit);
  pos("eval_batch", r.eval_batch);
  if (m.Has("tasks")) r.tasks = StringList(m, "tasks");
  nonneg("task_limit", r.task_limit);
  str("out", r.out);
  r.save_data = Bool(m, "save_data", r.save_data);
  str("deploy_plan", r.deploy_plan);
  m.Finish();
  for (const std::string& k : AdapterKeys()) {
    if (!node[k]) continue;
    if (const auto p = AdapterKeyProblem(r, k))
      throw MakeConfigError(m.WhereKey(k), m.KeyPath(k), p->problem, p->expected, p->hint);
  }
  for (const std::string& k : RecipeKeys()) {
    if (!node[k]) continue;
    if (const auto p = CheckRecipeKey(r, k))
      throw MakeConfigError(m.WhereKey(k), m.KeyPath(k), p->problem, p->expected, p->hint);
  }
}

RecoverRecipe LoadRecipe(const std::filesystem::path& path) {
  RecoverRecipe r;
  ApplyRecipeYaml(LoadYamlFile(path), path.string(), "", r);
  return r;
}

nlohmann::json RecipeToJson(const RecoverRecipe& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["tokenizer"] = r.tokenizer;
  j["bits"] = r.bits;
  j["group"] = r.group;
  j["scheme"] = r.scheme;
  j["layers"] = r.layers;
  j["degrade"] = r.degrade;
  j["noise_rel_l2"] = r.noise_rel_l2;
  j["noise_l2"] = r.noise_l2;
  j["dtype"] = r.dtype;
  j["bitflip_rate"] = r.bitflip_rate;
  j["method"] = r.method;
  j["qat_ste"] = r.qat_ste;
  j["rank"] = r.rank;
  j["alpha"] = r.alpha;
  j["dropout"] = r.dropout;
  j["lora_targets"] = r.LoraTargets();
  j["init"] = r.init;
  j["loftq_iters"] = r.loftq_iters;
  j["data"] = r.data;
  j["data_skip"] = r.data_skip;
  j["samples"] = r.samples;
  j["sample_len"] = r.sample_len;
  j["temperature"] = r.temperature;
  j["top_k"] = r.top_k;
  j["walk_vocab"] = r.walk_vocab;
  j["gen_batch"] = r.gen_batch;
  j["steps"] = r.steps;
  j["batch"] = r.batch;
  j["grad_accum"] = r.grad_accum;
  j["lr"] = r.lr;
  j["warmup"] = r.warmup;
  j["schedule"] = r.schedule;
  j["clip"] = r.clip;
  j["weight_decay"] = r.weight_decay;
  j["checkpoint_every"] = r.checkpoint_every;
  j["resume"] = r.resume;
  j["seed"] = r.seed;
  j["device"] = r.device;
  j["threads"] = r.threads;
  j["eval_text"] = r.eval_text;
  j["eval_limit"] = r.eval_limit;
  j["eval_batch"] = r.eval_batch;
  j["tasks"] = r.tasks;
  j["task_limit"] = r.task_limit;
  j["out"] = r.out;
  j["save_data"] = r.save_data;
  j["deploy_plan"] = r.deploy_plan;
  return j;
}

}  // namespace lifeline::recovery
