#pragma once
// The settings of one `lifeline recover` run, from a YAML recipe (strict
// keys, errors with file:line:col) and/or command-line flags.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace lifeline::recovery {

struct RecoverRecipe {
  // Model and tokenizer.
  std::string model;          // llama2.c .bin or HF directory; "" = shared stories260K
  std::string tokenizer;      // "" = found beside the model
  // Quantization (fake, QDQ) of the chosen layers.
  int bits = 2;               // 2, 3 or 4
  int64_t group = 32;         // group size along the input dimension
  std::string scheme = "asym";  // asym | sym
  std::vector<std::string> layers = {"mlp.gate_proj", "mlp.up_proj"};  // patterns every degradation applies to
  // Degradations (recovery/degrade), applied in order to `layers`.
  std::vector<std::string> degrade = {"quant"};  // quant | noise | dtype | bitflip
  double noise_rel_l2 = 0.1;        // noise: ||dW|| / ||W|| per layer (used when noise_l2 is 0)
  double noise_l2 = 0.0;            // noise: absolute ||dW|| per layer (0 = use noise_rel_l2)
  std::string dtype = "fp8-e4m3";   // dtype: fp16 | bf16 | fp8-e4m3 | fp8-e5m2
  double bitflip_rate = 1e-5;       // bitflip: fraction of the stored float32 bits flipped
  // Recovery method (recovery/train/methods.hpp).
  std::string method = "recover-lora";  // recover-lora | llm-qat | sft-lora
  bool qat_ste = false;                 // llm-qat on quant: keep the weights on the grid (STE)
  // LoRA.
  int64_t rank = 32;
  double alpha = 64.0;
  double dropout = 0.0;
  std::vector<std::string> lora_targets;  // empty = same as `layers`
  std::string init = "standard";          // standard | olora | loftq (lora/init.hpp)
  int64_t loftq_iters = 5;                // loftq: alternating quantize/SVD iterations
  // Training data.
  std::string data = "synthetic";  // synthetic | text:FILE
  int64_t data_skip = 0;           // text: stories to skip at the start of FILE
  int64_t samples = 512;           // sequences
  int64_t sample_len = 256;        // tokens per sequence at most
  double temperature = 1.0;        // synthetic sampling temperature
  int64_t top_k = 50;              // synthetic sampling top-k
  bool walk_vocab = false;         // synthetic first tokens walk the vocabulary
  int64_t gen_batch = 64;          // sequences generated together
  // Distillation.
  int64_t steps = 800;
  int64_t batch = 8;
  int64_t grad_accum = 1;
  double lr = 2e-3;
  int64_t warmup = 40;
  std::string schedule = "cosine";  // constant | linear | cosine
  double clip = 1.0;
  double weight_decay = 0.0;
  int64_t checkpoint_every = 0;     // steps; 0 = only at the end
  bool resume = false;              // continue from OUT/train_state
  // Run.
  uint64_t seed = 0;
  std::string device = "cpu";       // cpu | cuda | cuda:N
  int64_t threads = 0;              // 0 = hardware cores
  // Evaluation.
  std::string eval_text;            // "" = shared TinyStories validation file
  int64_t eval_limit = 200;         // first N stories (0 = all)
  int64_t eval_batch = 16;
  std::vector<std::string> tasks;   // lm-eval tasks (e.g. hellaswag, piqa)
  int64_t task_limit = 0;           // items per task (0 = all)
  // Output.
  std::string out = "recovery_out";
  bool save_data = true;            // write OUT/train_data.bin
  // Deployment (recovery/deploy): roofline plan preset or plan YAML; "" = none.
  std::string deploy_plan;

  // The lora targets actually used.
  const std::vector<std::string>& LoraTargets() const {
    return lora_targets.empty() ? layers : lora_targets;
  }
};

// Every key a recipe may hold (= the fields above).
const std::vector<std::string>& RecipeKeys();

// Applies the keys of mapping `node` onto `recipe` (strict: unknown keys are
// rejected with a did-you-mean hint; wrong types name file:line:col and the
// key). `file` names the source in errors; `path` is the key path prefix.
void ApplyRecipeYaml(const YAML::Node& node, const std::string& file, const std::string& path,
                     RecoverRecipe& recipe);
// Loads a recipe file onto the defaults.
RecoverRecipe LoadRecipe(const std::filesystem::path& path);

// Range checks every recipe value passes, whether it comes from a YAML key,
// a `recover` flag or a sweep cell (one set of rules for all three).
struct RecipeProblem {
  std::string problem, expected, hint;
};
// The problem with `key`'s value in `r`, or nothing when it is fine.
std::optional<RecipeProblem> CheckRecipeKey(const RecoverRecipe& r, const std::string& key);
// The keys that configure LoRA adapters: an error with method llm-qat,
// which trains every parameter and attaches none.
const std::vector<std::string>& AdapterKeys();
// The problem with adapter key `key` being set in `r`, if its method has no
// adapters.
std::optional<RecipeProblem> AdapterKeyProblem(const RecoverRecipe& r, const std::string& key);
// Throws a ConfigError for the first key of `keys` (all keys when empty)
// whose value fails; `where(key)` names its source ("--data-skip",
// "recipe.yaml", ...).
void ValidateRecipe(const RecoverRecipe& r, const std::function<std::string(const std::string&)>& where,
                    const std::vector<std::string>& keys = {});
// The `recover` flag of a key: "data_skip" -> "--data-skip".
std::string RecipeFlag(const std::string& key);
// Limits the checks enforce.
constexpr int64_t kMaxRecipeSamples = 1000000;   // training sequences
constexpr int64_t kMaxRecipeSampleLen = 65536;   // tokens (also capped by the model's context)
constexpr int64_t kMaxRecipeSteps = 100000000;
constexpr int64_t kMaxRecipeBatch = 65536;       // batch, gen_batch, eval_batch
constexpr double kMaxRecipeLr = 1.0;
constexpr double kMaxRecipeAlpha = 1e6;
// CPU threads: max(256, hardware threads).
int64_t MaxRecipeThreads();

// The recipe keys that decide the training run's result (everything but
// where it runs, what it evaluates and where it writes): compared on
// --resume against the fingerprint recorded by the run that started it.
nlohmann::json TrainingFingerprint(const RecoverRecipe& recipe);

// The resolved recipe as JSON (every key).
nlohmann::json RecipeToJson(const RecoverRecipe& recipe);

}  // namespace lifeline::recovery
