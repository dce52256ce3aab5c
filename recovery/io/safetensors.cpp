#include "recovery/io/safetensors.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <limits>
#include <system_error>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/yaml_util.hpp"
#include "common/atomic_file.hpp"
#include "common/error.hpp"

namespace lifeline::recovery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Largest header accepted (the reference implementation's limit).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

ConfigError FileError(const fs::path& path, const std::string& what) {
  return ConfigError(fmt::format("{}: invalid safetensors file: {}", path.string(), what));
}

struct DtypeInfo {
  const char* code;     // safetensors code
  at::ScalarType type;  // torch scalar type
  int64_t bytes;        // element size
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
    {"I16", at::kShort, 2}, {"I8", at::kChar, 1}, {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeInfo* FindDtype(const std::string& code) {
  for (const auto& d : kDtypes)
    if (code == d.code) return &d;
  return nullptr;
}

const DtypeInfo* FindDtype(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

struct Header {
  uint64_t data_start = 0;  // file offset of the data buffer
  std::vector<SafetensorsEntry> entries;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
};

Header ParseHeader(const fs::path& path, std::ifstream& in) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ConfigError(fmt::format("{}: file not found", path.string()));
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) throw FileError(path, "cannot stat: " + ec.message());
  in.open(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open for reading", path.string()));
  if (file_size < 8)
    throw FileError(path, fmt::format("truncated: {} bytes, shorter than the 8-byte header length",
                                      file_size));
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in) throw FileError(path, "cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes)
    throw FileError(path, fmt::format("header length {} exceeds the {}-byte limit", header_len,
                                      kMaxHeaderBytes));
  if (header_len > file_size - 8)
    throw FileError(path, fmt::format("header length {} runs past the end of the file ({} bytes)",
                                      header_len, file_size));
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw FileError(path, "cannot read the header");

  // Strict: a header naming a tensor twice is a lying file, not "the last one wins".
  const json j = ParseJsonStrict(text, path.string() + " (header)");
  if (!j.is_object()) throw FileError(path, "header is not a JSON object");

  Header h;
  h.data_start = 8 + header_len;
  const uint64_t buffer_bytes = file_size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw FileError(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw FileError(path, fmt::format("__metadata__ value '{}' is not a string", m.key()));
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) {
      return FileError(path, fmt::format("tensor '{}': {}", name, what));
    };
    if (!v.is_object()) throw bad("entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) throw bad(fmt::format("missing '{}'", key));
    if (!v["dtype"].is_string()) throw bad("dtype is not a string");
    SafetensorsEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = FindDtype(e.dtype);
    if (!info)
      throw bad(fmt::format("unknown or unsupported dtype '{}' (supported: F64, F32, F16, BF16, "
                            "I64, I32, I16, I8, U8, BOOL)",
                            e.dtype));
    const json& shape = v["shape"];
    if (!shape.is_array()) throw bad("shape is not an array");
    uint64_t numel = 1;
    for (const json& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw bad(fmt::format("shape {} has a dimension that is not a non-negative integer",
                              shape.dump()));
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim)
        throw bad(fmt::format("shape {} overflows", shape.dump()));
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw bad(fmt::format("data_offsets {} is not a pair of non-negative integers", off.dump()));
    e.begin_bytes = off[0].get<uint64_t>();
    e.end_bytes = off[1].get<uint64_t>();
    if (e.end_bytes < e.begin_bytes)
      throw bad(fmt::format("data_offsets [{}, {}] end before they begin", e.begin_bytes,
                            e.end_bytes));
    if (e.end_bytes > buffer_bytes)
      throw bad(fmt::format("data_offsets [{}, {}] lie outside the {}-byte data buffer",
                            e.begin_bytes, e.end_bytes, buffer_bytes));
    const uint64_t expected = numel * static_cast<uint64_t>(info->bytes);
    if (e.end_bytes - e.begin_bytes != expected)
      throw bad(fmt::format("dtype {} and shape {} need {} bytes but data_offsets [{}, {}] hold {}",
                            e.dtype, shape.dump(), expected, e.begin_bytes, e.end_bytes,
                            e.end_bytes - e.begin_bytes));
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin_bytes != b.begin_bytes ? a.begin_bytes < b.begin_bytes
                                          : a.end_bytes < b.end_bytes;
  });
  for (size_t i = 1; i < h.entries.size(); ++i) {
    const auto& prev = h.entries[i - 1];
    const auto& cur = h.entries[i];
    if (cur.begin_bytes < prev.end_bytes)
      throw FileError(path, fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap",
                                        prev.name, prev.begin_bytes, prev.end_bytes, cur.name,
                                        cur.begin_bytes, cur.end_bytes));
  }
  return h;
}

}  // namespace

std::vector<SafetensorsEntry> ReadSafetensorsHeader(const fs::path& path) {
  std::ifstream in;
  return ParseHeader(path, in).entries;
}

std::map<std::string, std::string> ReadSafetensorsMetadata(const fs::path& path) {
  std::ifstream in;
  return ParseHeader(path, in).metadata;
}

std::map<std::string, at::Tensor> ReadSafetensors(const fs::path& path) {
  std::ifstream in;
  Header h = ParseHeader(path, in);
  std::map<std::string, at::Tensor> out;
  for (const auto& e : h.entries) {
    const DtypeInfo* info = FindDtype(e.dtype);
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(info->type).device(at::kCPU));
    const uint64_t bytes = e.end_bytes - e.begin_bytes;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(h.data_start + e.begin_bytes));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
      if (!in)
        throw FileError(path, fmt::format("tensor '{}': cannot read {} bytes (file truncated?)",
                                          e.name, bytes));
    }
    out.emplace(e.name, std::move(t));
  }
  return out;
}

void WriteSafetensors(const fs::path& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__")
      throw ConfigError(fmt::format("{}: tensor name '__metadata__' is reserved", path.string()));
    if (!tensor.defined())
      throw ConfigError(fmt::format("{}: tensor '{}' is undefined", path.string(), name));
    const DtypeInfo* info = FindDtype(tensor.scalar_type());
    if (!info)
      throw ConfigError(fmt::format("{}: tensor '{}' has dtype {} that safetensors export does "
                                    "not support",
                                    path.string(), name, c10::toString(tensor.scalar_type())));
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * static_cast<uint64_t>(info->bytes);
    header[name] = {{"dtype", info->code},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');

  AtomicFile out(path);
  unsigned char len_bytes[8];
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  out.Write(std::string_view(reinterpret_cast<const char*>(len_bytes), 8));
  out.Write(text);
  for (const at::Tensor& t : data) {
    out.Write(std::string_view(static_cast<const char*>(t.data_ptr()),
                               static_cast<size_t>(t.numel() * t.element_size())));
  }
  out.Commit();
}

}  // namespace lifeline::recovery
