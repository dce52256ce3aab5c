# Recovery I/O: tokenizers (no LibTorch), then safetensors, Hugging Face
# checkpoints and evaluators. Included from recovery/CMakeLists.txt; paths are
# relative to recovery/.
find_package(BZip2 REQUIRED)

# Tokenizers: llama2.c tokenizer.bin, HF byte-level BPE tokenizer.json,
# sentencepiece .model (read natively: libsentencepiece cannot share a process
# with libtorch, see tokenizer/sentencepiece_tokenizer.cpp).
add_library(lifeline_recovery_tokenizer STATIC
  tokenizer/tokenizer.cpp
  tokenizer/llama2c_tokenizer.cpp
  tokenizer/hf_bpe_tokenizer.cpp
  tokenizer/sentencepiece_tokenizer.cpp
)
target_include_directories(lifeline_recovery_tokenizer PUBLIC ${PROJECT_SOURCE_DIR})
# PCRE2 (UTF + UCP) runs tokenizer.json's pre-tokenizer regexes.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIFELINE_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
target_link_libraries(lifeline_recovery_tokenizer
  PUBLIC lifeline_common nlohmann_json::nlohmann_json fmt::fmt
  PRIVATE PkgConfig::LIFELINE_PCRE2)

add_library(lifeline_recovery_io STATIC
  io/safetensors.cpp
  io/hf_checkpoint.cpp
  io/arch_support.cpp
  eval/text_metrics.cpp
  eval/loglikelihood.cpp
  eval/lm_eval_tasks.cpp
  eval/gsm8k.cpp
  eval/wikitext.cpp
  eval/accuracy_recovery.cpp
)
target_include_directories(lifeline_recovery_io PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(lifeline_recovery_io
  PUBLIC lifeline_spec lifeline_recovery_tokenizer ${TORCH_LIBRARIES}
         nlohmann_json::nlohmann_json fmt::fmt
  PRIVATE BZip2::BZip2)
