#pragma once
// A model from the zoo written as a GGUF file llama.cpp loads: architecture
// "llama" (model_type llama) or "qwen3", every linear stored in the ggml type
// its quantization plan names (plan rule `format: q4_0`, presets gguf-*),
// weights either seeded random numbers or a llama2.c checkpoint.
//
// Tensors (llama.cpp's names, src/llama-arch.cpp), ne0 = row length = input size:
//   token_embd.weight  {hidden, vocab}       lm_head's type
//   output_norm.weight {hidden}              f32
//   output.weight      {hidden, vocab}       lm_head's type (written also when tied)
//   blk.N.attn_norm / ffn_norm {hidden}      f32
//   blk.N.attn_q {hidden, heads*head_dim}, attn_k / attn_v {hidden, kv_heads*head_dim},
//   blk.N.attn_output {heads*head_dim, hidden}, ffn_gate / ffn_up {hidden, ffn},
//   blk.N.ffn_down {ffn, hidden}             the plan's type for layers.N.attn.q_proj ...
//   blk.N.attn_q_norm / attn_k_norm {head_dim}  f32 (qwen3 only)

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "experiments/measure/gguf_writer.hpp"
#include "roofline/spec/ggml_format.hpp"
#include "roofline/spec/model_arch.hpp"
#include "roofline/spec/quant_plan.hpp"

namespace lifeline::measure {

// One tensor of a model's GGUF file.
struct GgufTensorEntry {
  std::string name;            // GGUF name: "blk.3.ffn_gate.weight"
  std::string role;            // llama.cpp's tensor kind: "token_embd", "attn_q", "ffn_down", ...
  int64_t layer = -1;          // decoder layer, -1 for token_embd / output_norm / output
  std::string op;              // the roofline's linear whose plan format it takes ("layers.3.mlp.gate_proj",
                               // "lm_head" for token_embd and output), "" for norms (always f32)
  std::vector<int64_t> shape;  // ne0 first: {row length, rows}
  GgmlType type = GgmlType::kF32;
  int64_t elements = 0;        // weights in the tensor
  int64_t bytes = 0;           // stored bytes (unpadded)
};

// Every tensor of a model's file, in file order, without writing anything.
struct GgufTensorPlan {
  std::string arch;                       // GGUF architecture: "llama" or "qwen3"
  std::vector<GgufTensorEntry> tensors;
  int64_t total_elements = 0;             // over all tensors (output counted even when tied)
  int64_t total_bytes = 0;                // over all tensors, unpadded
  int64_t linear_elements = 0;            // over the tensors that take a plan format (op not empty)
  int64_t linear_bytes = 0;

  // Storage bits per weight over all tensors / over the plan's linears.
  double BitsPerWeight() const { return total_elements ? 8.0 * total_bytes / total_elements : 0.0; }
  double LinearBitsPerWeight() const { return linear_elements ? 8.0 * linear_bytes / linear_elements : 0.0; }
};

// The tensors `arch` has in `plan`'s formats. Throws ConfigError for a model
// family the writer does not handle (MoE, sliding windows, biases, model_type
// other than llama/qwen3), for a linear whose format has no ggml type ("this
// plan has no ggml storage type for layers.0.mlp.gate_proj (INT2 g32) ...") and
// for a tensor whose row length is not a whole number of its type's blocks
// (naming the tensor and its shape).
GgufTensorPlan ListModelTensors(const ModelArch& arch, const QuantPlan& plan);

// The GGUF architecture name of `arch` ("llama" or "qwen3"); ConfigError otherwise.
std::string GgufArchName(const ModelArch& arch);

// --- vocabulary ------------------------------------------------------------

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
inline constexpr int32_t kTokenNormal = 1;
inline constexpr int32_t kTokenUnknown = 2;
inline constexpr int32_t kTokenControl = 3;
inline constexpr int32_t kTokenByte = 6;

// A sentencepiece-style vocabulary (tokenizer.ggml.model = "llama").
struct GgufVocab {
  std::vector<std::string> tokens;  // token text, spaces as U+2581 "▁"
  std::vector<float> scores;        // merge priority (higher first)
  std::vector<int32_t> types;       // kToken*
  uint32_t unk_id = 0, bos_id = 1, eos_id = 2;
};

// `vocab_size` tokens: <unk>, <s>, </s>, the byte tokens <0x00>..<0xFF>
// (type byte; llama.cpp looks up <0x0A> for newlines), then "tok_N" (normal).
// ConfigError when vocab_size < 259.
GgufVocab SyntheticVocab(int64_t vocab_size);

// A llama2.c tokenizer file (int32 max_token_length, then per token float32
// score, int32 length, bytes) with exactly `vocab_size` tokens. Undoes the
// export's rewrites for llama.cpp: ' ' back to "▁", "\n<s>\n" / "\n</s>\n" to
// "<s>" / "</s>". Types: 0 unknown, 1 and 2 control, "<0x..>" byte, the rest
// normal. ConfigError naming the file when truncated, too long or malformed.
GgufVocab ReadLlama2cTokenizer(const std::filesystem::path& path, int64_t vocab_size);

// --- llama2.c checkpoints ----------------------------------------------------

// The 7 int32 header of a legacy llama2.c checkpoint.
struct Llama2cHeader {
  int32_t dim = 0;          // hidden size
  int32_t hidden_dim = 0;   // FFN inner size
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;   // negative: the classifier is stored separately (unshared)
  int32_t seq_len = 0;      // max sequence length (freq_cis rows)

  bool SharedClassifier() const { return vocab_size > 0; }
  // Bytes the whole file must have.
  int64_t FileBytes() const;
};

// Reads the header of `path` and checks it against `arch` (sizes, tied
// classifier) and the file's length. ConfigError naming the file and the
// field on a mismatch or a truncated file.
Llama2cHeader CheckLlama2cCheckpoint(const std::filesystem::path& path, const ModelArch& arch);

// --- writing -----------------------------------------------------------------

// Where the weights come from.
struct GgufWeightSource {
  // A llama2.c checkpoint (.bin, legacy float32 format); empty = seeded random weights.
  std::filesystem::path checkpoint;
  // llama2.c tokenizer file; empty = with a checkpoint, tok<vocab>.bin or
  // tokenizer.bin beside it; for random weights, SyntheticVocab.
  std::filesystem::path tokenizer;
  uint64_t seed = 1;        // random weights: same seed, same bytes
  double init_std = 0.02;   // random weights' standard deviation (norm weights are 1)
  int threads = 2;          // threads generating and quantizing rows
  // Called now and then with (bytes written, bytes to write), for progress lines.
  std::function<void(int64_t, int64_t)> progress;
};

struct GgufWriteResult {
  GgufTensorPlan tensors;   // what was written
  GgufLayoutInfo layout;    // header / data sizes; layout.file_bytes is the file's size
};

// The metadata of `arch`'s file: general.*, <arch>.* hyper-parameters and tokenizer.ggml.*.
std::vector<GgufKv> ModelGgufMetadata(const ModelArch& arch, const GgufTensorPlan& tensors, const GgufVocab& vocab);

// Writes `arch` in `plan`'s formats to `out` (through a temporary, renamed at the
// end), one tensor and a few rows at a time. Throws ConfigError for what
// ListModelTensors rejects and for a checkpoint or tokenizer that does not
// match `arch`, Error for I/O failures; both name the file.
GgufWriteResult WriteModelGguf(const ModelArch& arch, const QuantPlan& plan, const GgufWeightSource& src,
                               const std::filesystem::path& out);

}  // namespace lifeline::measure
