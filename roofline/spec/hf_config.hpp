#pragma once
// Architecture families: a zoo YAML mapping or a Hugging Face config.json,
// read as one set of keys and turned into a ModelArch by the rules of its
// model_type (llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma2,
// gemma3_text, phi3, gpt_oss, deepseek_v2, deepseek_v3).
//
// Per model_type a key is one of: read (it shapes the graph), cost-neutral
// (accepted: token ids, dtypes, RoPE scaling details, training-only settings),
// a key of another family (an error: lifeline would have to ignore it to
// build the graph), or unknown (a zoo YAML rejects it; a config.json keeps a
// one-line warning in ModelArch::warnings).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "roofline/spec/model_arch.hpp"

namespace lifeline {

// One value of a config, with the position of its key for messages.
struct ConfigValue {
  enum class Kind { kNull, kInt, kNumber, kBool, kString, kList, kMap };
  Kind kind = Kind::kNull;
  int64_t i = 0;       // kInt
  double d = 0;        // kInt and kNumber
  bool b = false;      // kBool
  std::string s;       // kString
  std::vector<ConfigValue> list;  // kList
  std::string text;    // the value as written, for messages
  std::string where;   // file:line:col of the key
};
using ConfigKeys = std::map<std::string, ConfigValue>;

// The top-level keys of a config.json object (`key_where` from ParseJsonStrict).
ConfigKeys ConfigKeysFromJson(const nlohmann::json& j, const std::string& file,
                              const std::map<std::string, std::string>& key_where);
// The keys of a zoo YAML mapping.
ConfigKeys ConfigKeysFromYaml(const YAML::Node& root, const std::string& file);

// Builds the architecture. `strict` (zoo YAML): unknown keys are errors;
// otherwise (config.json) they become warnings. `name` is the display name
// (a zoo YAML's `name` key overrides it).
ModelArch ArchFromConfigKeys(const ConfigKeys& keys, const std::string& file, const std::string& name, bool strict);

}  // namespace lifeline
