# Recovery core: decoder model, quantizer, LoRA, synthetic data, distillation
# trainer, the `recover` command and the sweep's recovery cells.
# Paths are relative to recovery/.
add_library(lifeline_recovery STATIC
  model/llama2c_checkpoint.cpp
  model/linear.cpp
  model/decoder.cpp
  model/generate.cpp
  model/shared_paths.cpp
  model/allocator.cpp
  quant/rtn.cpp
  quant/packed.cpp
  lora/lora_linear.cpp
  lora/peft.cpp
  lora/init.cpp
  deploy/deploy.cpp
  data/synthetic.cpp
  train/distill.cpp
  cli/recipe.cpp
  cli/recover_command.cpp
  cli/recover_method.cpp
  cli/run_dir.cpp
  degrade/float_format.cpp
  degrade/degrade.cpp
  train/methods.cpp
  cli/recovery_cell.cpp
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

# lifeline-recover: the LibTorch executable `lifeline recover` hands over to.
add_executable(lifeline-recover cli/main.cpp)
set_target_properties(lifeline-recover PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
target_link_libraries(lifeline-recover PRIVATE lifeline_recovery)
