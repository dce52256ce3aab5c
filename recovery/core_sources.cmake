# Recovery core (owned by the recovery-core engineer): decoder model,
# quantizer, LoRA, synthetic data, distillation trainer, `recover` command.
# Paths are relative to recovery/.
add_library(lifeline_recovery STATIC
  model/llama2c_checkpoint.cpp
  model/linear.cpp
  model/decoder.cpp
  model/shared_paths.cpp
  quant/rtn.cpp
  quant/packed.cpp
  lora/lora_linear.cpp
  lora/peft.cpp
  data/synthetic.cpp
  train/distill.cpp
  cli/recipe.cpp
  cli/recover_command.cpp
)
target_include_directories(lifeline_recovery PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(lifeline_recovery PUBLIC
  lifeline_recovery_io
  lifeline_spec
  ${TORCH_LIBRARIES}
  CLI11::CLI11
  nlohmann_json::nlohmann_json
  fmt::fmt
  yaml-cpp
)
