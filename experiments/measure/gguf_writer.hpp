#pragma once
// GGUF v3 files (ggml/src/gguf.cpp, docs/gguf.md): a streaming writer and a
// small reader of the header, metadata and tensor infos.
//
// Layout: "GGUF" u32 version, i64 tensor count, i64 metadata count; each
// metadata entry as string key, u32 value type, value (strings are u64 length +
// bytes, arrays u32 element type + u64 count + elements); each tensor info as
// string name, u32 dimension count, i64 ne[] (ne0 = row length), u32 ggml type,
// u64 offset into the data section; zero padding to the alignment; then the
// tensors' bytes, each padded to the alignment (offsets are those running sums,
// as gguf.cpp checks). All little-endian.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "roofline/spec/ggml_format.hpp"

namespace lifeline::measure {

inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint32_t kGgufDefaultAlignment = 32;

// gguf.h's enum gguf_type.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufValueTypeName(GgufValueType t);

// One metadata value. Scalars keep integers (and bools) in `integer`, floats in
// `real`; arrays keep numbers in `numbers` and strings in `strings`.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint32;
  GgufValueType array_type = GgufValueType::kUint32;  // element type when type == kArray
  int64_t integer = 0;                // integer and bool scalars (uint64 above 2^63 wraps)
  double real = 0;                    // float32/float64 scalars
  std::string string;                 // string scalar
  std::vector<double> numbers;        // numeric and bool arrays
  std::vector<std::string> strings;   // string arrays

  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue F32(float v);
  static GgufValue Bool(bool v);
  static GgufValue Str(std::string v);
  static GgufValue StrArray(std::vector<std::string> v);
  static GgufValue F32Array(const std::vector<float>& v);
  static GgufValue I32Array(const std::vector<int32_t>& v);

  // Elements of an array (0 for scalars).
  size_t ArraySize() const { return type == GgufValueType::kArray ? numbers.size() + strings.size() : 0; }
  // "u32 32", "str \"llama\"", "[str x 512]" for listings.
  std::string Describe() const;
};

struct GgufKv {
  std::string key;   // "general.architecture", "llama.block_count"
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;             // "blk.0.attn_q.weight" (< 64 bytes, ggml's GGML_MAX_NAME)
  std::vector<int64_t> shape;   // ne0 first: {row length, rows, ...}; 1 to 4 dimensions
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;          // from the start of the data section (set by the writer / read)

  int64_t Elements() const;
  int64_t RowElements() const { return shape.empty() ? 0 : shape[0]; }
  int64_t Rows() const;         // elements / row length
  int64_t Bytes() const;        // GgmlRowBytes(type, ne0) * rows
};

// Writes `tensor`'s bytes through `write`, a row or a few at a time; the writer
// checks that exactly info.Bytes() arrive.
using GgufWriteFn = std::function<void(std::span<const uint8_t>)>;
using GgufFillFn = std::function<void(size_t index, const GgufTensorInfo& info, const GgufWriteFn& write)>;

// Sizes of a file before writing it.
struct GgufLayoutInfo {
  uint64_t header_bytes = 0;     // magic .. tensor infos, before the padding
  uint64_t data_offset = 0;      // where the data section starts (header padded to the alignment)
  uint64_t data_bytes = 0;       // data section, every tensor padded to the alignment
  uint64_t file_bytes = 0;       // data_offset + data_bytes
};

// Sets each tensor's offset (running sum of aligned sizes) and returns the
// sizes. Adds general.alignment to `kvs` when absent. Throws ConfigError (naming
// `where`) for a tensor name too long or repeated, a bad shape or a row length
// that is not a whole number of blocks.
GgufLayoutInfo PlanGgufLayout(std::vector<GgufKv>& kvs, std::vector<GgufTensorInfo>& tensors,
                              uint32_t alignment = kGgufDefaultAlignment, const std::string& where = "gguf");

// Writes a GGUF v3 file at `path`: the metadata `kvs` (general.alignment added
// when absent), the tensor infos (offsets computed here), then every tensor's
// bytes from `fill`, called once per tensor in order. The file is written
// through AtomicFile (a temporary beside it, renamed on success; a device or
// FIFO such as /dev/null is written in place, a symbolic link is kept); on any
// error the temporary is removed and the error, which names the file, is
// rethrown. Returns the layout written.
GgufLayoutInfo WriteGguf(const std::filesystem::path& path, std::vector<GgufKv> kvs, std::vector<GgufTensorInfo> tensors,
                         const GgufFillFn& fill, uint32_t alignment = kGgufDefaultAlignment);

// What ReadGguf finds in a file.
struct GgufFile {
  uint32_t version = 0;
  uint32_t alignment = kGgufDefaultAlignment;  // general.alignment or 32
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorInfo> tensors;
  uint64_t header_bytes = 0;  // bytes up to the end of the tensor infos
  uint64_t data_offset = 0;   // file offset of the data section
  uint64_t file_bytes = 0;    // size of the file

  const GgufValue* Find(std::string_view key) const;      // nullptr when absent
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // Typed look-ups that throw ConfigError naming the file and key when absent or of another type.
  std::string GetString(std::string_view key) const;
  int64_t GetInt(std::string_view key) const;
  double GetReal(std::string_view key) const;
  std::filesystem::path path;
};

// Reads and checks a GGUF file's header, metadata and tensor infos (not the
// tensor data): magic, version 2 or 3, sizes inside the file, known ggml types
// (those of roofline/spec/ggml_format.hpp), offsets aligned and following one
// another, every tensor's bytes inside the file (a truncated file fails).
// Throws ConfigError naming the file.
GgufFile ReadGguf(const std::filesystem::path& path);

// The bytes of one tensor of a file ReadGguf returned.
std::vector<uint8_t> ReadGgufTensorBytes(const GgufFile& file, const GgufTensorInfo& tensor);

}  // namespace lifeline::measure
