#include "experiments/measure/gguf_writer.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/atomic_file.hpp"
#include "common/error.hpp"

namespace lifeline::measure {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr size_t kMaxTensorName = 63;        // GGML_MAX_NAME - 1
constexpr int kMaxDims = 4;                  // GGML_MAX_DIMS

uint64_t PadTo(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

size_t ScalarBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray: return 0;
  }
  return 0;
}

bool IsFloatType(GgufValueType t) { return t == GgufValueType::kFloat32 || t == GgufValueType::kFloat64; }

// --- serialization ---------------------------------------------------------

class Buffer {
 public:
  template <typename T>
  void Put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_.append(s);
  }
  // A number of type `t` (not string/array).
  void PutNumber(GgufValueType t, int64_t i, double r) {
    switch (t) {
      case GgufValueType::kUint8: Put<uint8_t>(static_cast<uint8_t>(i)); break;
      case GgufValueType::kInt8: Put<int8_t>(static_cast<int8_t>(i)); break;
      case GgufValueType::kBool: Put<uint8_t>(i != 0 ? 1 : 0); break;
      case GgufValueType::kUint16: Put<uint16_t>(static_cast<uint16_t>(i)); break;
      case GgufValueType::kInt16: Put<int16_t>(static_cast<int16_t>(i)); break;
      case GgufValueType::kUint32: Put<uint32_t>(static_cast<uint32_t>(i)); break;
      case GgufValueType::kInt32: Put<int32_t>(static_cast<int32_t>(i)); break;
      case GgufValueType::kFloat32: Put<float>(static_cast<float>(r)); break;
      case GgufValueType::kUint64: Put<uint64_t>(static_cast<uint64_t>(i)); break;
      case GgufValueType::kInt64: Put<int64_t>(i); break;
      case GgufValueType::kFloat64: Put<double>(r); break;
      default: LIFELINE_CHECK(false, "PutNumber on a string or array type");
    }
  }
  void PutValue(const GgufValue& v) {
    Put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == GgufValueType::kString) {
      PutString(v.string);
    } else if (v.type == GgufValueType::kArray) {
      Put<uint32_t>(static_cast<uint32_t>(v.array_type));
      if (v.array_type == GgufValueType::kString) {
        Put<uint64_t>(v.strings.size());
        for (const auto& s : v.strings) PutString(s);
      } else {
        Put<uint64_t>(v.numbers.size());
        for (double x : v.numbers) PutNumber(v.array_type, static_cast<int64_t>(x), x);
      }
    } else {
      PutNumber(v.type, v.integer, v.real);
    }
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

std::string SerializeHeader(const std::vector<GgufKv>& kvs, const std::vector<GgufTensorInfo>& tensors) {
  Buffer b;
  b.Put<uint32_t>(kGgufMagic);
  b.Put<uint32_t>(kGgufVersion);
  b.Put<int64_t>(static_cast<int64_t>(tensors.size()));
  b.Put<int64_t>(static_cast<int64_t>(kvs.size()));
  for (const auto& kv : kvs) {
    b.PutString(kv.key);
    b.PutValue(kv.value);
  }
  for (const auto& t : tensors) {
    b.PutString(t.name);
    b.Put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t ne : t.shape) b.Put<int64_t>(ne);
    b.Put<uint32_t>(static_cast<uint32_t>(static_cast<int32_t>(t.type)));
    b.Put<uint64_t>(t.offset);
  }
  return b.bytes();
}

bool KnownGgmlType(int32_t id) {
  for (const auto& l : GgmlLayouts()) {
    if (static_cast<int32_t>(l.type) == id) return true;
  }
  return false;
}

// Where a tensor's shape or type is wrong: throws ConfigError.
void CheckTensor(const GgufTensorInfo& t, const std::string& where) {
  if (t.name.empty() || t.name.size() > kMaxTensorName) {
    throw MakeConfigError(where, t.name, fmt::format("tensor name of {} bytes", t.name.size()),
                          fmt::format("1 to {} bytes (ggml's GGML_MAX_NAME)", kMaxTensorName));
  }
  if (t.shape.empty() || t.shape.size() > static_cast<size_t>(kMaxDims)) {
    throw MakeConfigError(where, t.name, fmt::format("{} dimensions", t.shape.size()), "1 to 4 dimensions");
  }
  for (int64_t ne : t.shape) {
    if (ne <= 0) throw MakeConfigError(where, t.name, fmt::format("dimension of size {}", ne), "sizes >= 1");
  }
  if (!KnownGgmlType(static_cast<int32_t>(t.type))) {
    throw MakeConfigError(where, t.name, fmt::format("ggml type id {}", static_cast<int32_t>(t.type)),
                          "f32, f16, q4_0, q8_0, q2_k, q3_k or q4_k");
  }
  const GgmlBlockLayout& l = GgmlLayout(t.type);
  if (t.shape[0] % l.block_elements != 0) {
    throw MakeConfigError(where, t.name,
                          fmt::format("row length {} (shape {}) is not a whole number of {} blocks of {} weights",
                                      t.shape[0], fmt::join(t.shape, "x"), l.name, l.block_elements),
                          fmt::format("a multiple of {}", l.block_elements),
                          "store this tensor in a type with smaller blocks (f16, or q4_0/q8_0 for multiples of 32)");
  }
}

// The output file (AtomicFile: a temporary renamed at Commit, devices and
// FIFOs written in place, links kept) and the bytes written so far.
class OutFile {
 public:
  explicit OutFile(const fs::path& path) : file_(path) {}

  void Write(const void* data, size_t n) {
    file_.Write(std::string_view(static_cast<const char*>(data), n));
    written_ += n;
  }
  void PadTo(uint64_t alignment) {
    static const char kZeros[64] = {};
    while (written_ % alignment != 0) Write(kZeros, std::min<uint64_t>(sizeof(kZeros), alignment - written_ % alignment));
  }
  uint64_t written() const { return written_; }
  const fs::path& path() const { return file_.path(); }
  void Commit() { file_.Commit(); }

 private:
  AtomicFile file_;
  uint64_t written_ = 0;
};

// --- reading ---------------------------------------------------------------

class Reader {
 public:
  explicit Reader(const fs::path& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) throw MakeConfigError(path.string(), "", "cannot open the file", "a readable GGUF file");
    std::error_code ec;
    size_ = fs::file_size(path, ec);
    if (ec) throw MakeConfigError(path.string(), "", "cannot get the file size: " + ec.message(), "a readable GGUF file");
  }
  [[noreturn]] void Fail(const std::string& problem, const std::string& expected = "a GGUF v3 file") const {
    throw MakeConfigError(path_.string(), "", fmt::format("{} at byte {}", problem, pos_), expected,
                          "the file may be truncated or not a GGUF file; delete it to have it written again");
  }
  void Bytes(void* out, uint64_t n) {
    if (n > size_ - pos_) Fail(fmt::format("{} bytes needed but the file ends", n));
    in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    if (!in_) Fail("read error");
    pos_ += n;
  }
  template <typename T>
  T Get() {
    T v;
    Bytes(&v, sizeof(T));
    return v;
  }
  std::string String() {
    const uint64_t n = Get<uint64_t>();
    if (n > size_ - pos_) Fail(fmt::format("a string of {} bytes runs past the end of the file", n));
    std::string s(n, '\0');
    Bytes(s.data(), n);
    return s;
  }
  GgufValueType Type() {
    const uint32_t t = Get<uint32_t>();
    if (t > static_cast<uint32_t>(GgufValueType::kFloat64)) Fail(fmt::format("unknown value type {}", t));
    return static_cast<GgufValueType>(t);
  }
  // A number of scalar type `t` as (integer, real).
  void Number(GgufValueType t, int64_t* i, double* r) {
    *i = 0;
    *r = 0;
    switch (t) {
      case GgufValueType::kUint8: *i = Get<uint8_t>(); break;
      case GgufValueType::kInt8: *i = Get<int8_t>(); break;
      case GgufValueType::kBool: *i = Get<uint8_t>() != 0; break;
      case GgufValueType::kUint16: *i = Get<uint16_t>(); break;
      case GgufValueType::kInt16: *i = Get<int16_t>(); break;
      case GgufValueType::kUint32: *i = Get<uint32_t>(); break;
      case GgufValueType::kInt32: *i = Get<int32_t>(); break;
      case GgufValueType::kFloat32: *r = Get<float>(); break;
      case GgufValueType::kUint64: *i = static_cast<int64_t>(Get<uint64_t>()); break;
      case GgufValueType::kInt64: *i = Get<int64_t>(); break;
      case GgufValueType::kFloat64: *r = Get<double>(); break;
      default: Fail("a string or array where a number was expected");
    }
    if (!IsFloatType(t)) *r = static_cast<double>(*i);
  }
  GgufValue Value() {
    GgufValue v;
    v.type = Type();
    if (v.type == GgufValueType::kString) {
      v.string = String();
    } else if (v.type == GgufValueType::kArray) {
      v.array_type = Type();
      if (v.array_type == GgufValueType::kArray) Fail("nested arrays are not supported");
      const uint64_t n = Get<uint64_t>();
      const uint64_t min_bytes = v.array_type == GgufValueType::kString ? 8 : ScalarBytes(v.array_type);
      if (n > (size_ - pos_) / min_bytes) Fail(fmt::format("an array of {} elements runs past the end of the file", n));
      if (v.array_type == GgufValueType::kString) {
        v.strings.reserve(n);
        for (uint64_t k = 0; k < n; ++k) v.strings.push_back(String());
      } else {
        v.numbers.reserve(n);
        for (uint64_t k = 0; k < n; ++k) {
          int64_t i;
          double r;
          Number(v.array_type, &i, &r);
          v.numbers.push_back(r);
        }
      }
    } else {
      Number(v.type, &v.integer, &v.real);
    }
    return v;
  }
  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }

 private:
  fs::path path_;
  std::ifstream in_;
  uint64_t size_ = 0;
  uint64_t pos_ = 0;
};

}  // namespace

const char* GgufValueTypeName(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: return "u8";
    case GgufValueType::kInt8: return "i8";
    case GgufValueType::kUint16: return "u16";
    case GgufValueType::kInt16: return "i16";
    case GgufValueType::kUint32: return "u32";
    case GgufValueType::kInt32: return "i32";
    case GgufValueType::kFloat32: return "f32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "str";
    case GgufValueType::kArray: return "arr";
    case GgufValueType::kUint64: return "u64";
    case GgufValueType::kInt64: return "i64";
    case GgufValueType::kFloat64: return "f64";
  }
  return "?";
}

GgufValue GgufValue::U32(uint32_t v) {
  GgufValue g;
  g.type = GgufValueType::kUint32;
  g.integer = v;
  g.real = v;
  return g;
}
GgufValue GgufValue::I32(int32_t v) {
  GgufValue g;
  g.type = GgufValueType::kInt32;
  g.integer = v;
  g.real = v;
  return g;
}
GgufValue GgufValue::F32(float v) {
  GgufValue g;
  g.type = GgufValueType::kFloat32;
  g.real = v;
  return g;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue g;
  g.type = GgufValueType::kBool;
  g.integer = v ? 1 : 0;
  g.real = g.integer;
  return g;
}
GgufValue GgufValue::Str(std::string v) {
  GgufValue g;
  g.type = GgufValueType::kString;
  g.string = std::move(v);
  return g;
}
GgufValue GgufValue::StrArray(std::vector<std::string> v) {
  GgufValue g;
  g.type = GgufValueType::kArray;
  g.array_type = GgufValueType::kString;
  g.strings = std::move(v);
  return g;
}
GgufValue GgufValue::F32Array(const std::vector<float>& v) {
  GgufValue g;
  g.type = GgufValueType::kArray;
  g.array_type = GgufValueType::kFloat32;
  g.numbers.assign(v.begin(), v.end());
  return g;
}
GgufValue GgufValue::I32Array(const std::vector<int32_t>& v) {
  GgufValue g;
  g.type = GgufValueType::kArray;
  g.array_type = GgufValueType::kInt32;
  g.numbers.assign(v.begin(), v.end());
  return g;
}

std::string GgufValue::Describe() const {
  switch (type) {
    case GgufValueType::kString: return fmt::format("str \"{}\"", string);
    case GgufValueType::kArray: return fmt::format("[{} x {}]", GgufValueTypeName(array_type), ArraySize());
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64: return fmt::format("{} {}", GgufValueTypeName(type), real);
    case GgufValueType::kBool: return integer ? "bool true" : "bool false";
    default: return fmt::format("{} {}", GgufValueTypeName(type), integer);
  }
}

int64_t GgufTensorInfo::Elements() const {
  int64_t n = 1;
  for (int64_t ne : shape) n *= ne;
  return shape.empty() ? 0 : n;
}

int64_t GgufTensorInfo::Rows() const { return shape.empty() ? 0 : Elements() / shape[0]; }

int64_t GgufTensorInfo::Bytes() const { return GgmlRowBytes(type, RowElements()) * Rows(); }

GgufLayoutInfo PlanGgufLayout(std::vector<GgufKv>& kvs, std::vector<GgufTensorInfo>& tensors, uint32_t alignment,
                              const std::string& where) {
  LIFELINE_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "GGUF alignment must be a power of two");
  bool has_alignment = false;
  std::set<std::string> keys;
  for (const auto& kv : kvs) {
    if (!keys.insert(kv.key).second) throw MakeConfigError(where, kv.key, "metadata key given twice", "unique keys");
    if (kv.key == "general.alignment") {
      if (kv.value.type != GgufValueType::kUint32 || kv.value.integer != alignment) {
        throw MakeConfigError(where, kv.key, "general.alignment " + kv.value.Describe(),
                              fmt::format("u32 {} (the writer's alignment)", alignment));
      }
      has_alignment = true;
    }
  }
  if (!has_alignment) kvs.push_back({"general.alignment", GgufValue::U32(alignment)});
  std::set<std::string> names;
  GgufLayoutInfo out;
  for (auto& t : tensors) {
    CheckTensor(t, where);
    if (!names.insert(t.name).second) throw MakeConfigError(where, t.name, "tensor name given twice", "unique names");
    t.offset = out.data_bytes;
    out.data_bytes += PadTo(static_cast<uint64_t>(t.Bytes()), alignment);
  }
  out.header_bytes = SerializeHeader(kvs, tensors).size();
  out.data_offset = PadTo(out.header_bytes, alignment);
  out.file_bytes = out.data_offset + out.data_bytes;
  return out;
}

GgufLayoutInfo WriteGguf(const fs::path& path, std::vector<GgufKv> kvs, std::vector<GgufTensorInfo> tensors,
                         const GgufFillFn& fill, uint32_t alignment) {
  const GgufLayoutInfo layout = PlanGgufLayout(kvs, tensors, alignment, path.string());
  const std::string header = SerializeHeader(kvs, tensors);
  OutFile out(path);
  out.Write(header.data(), header.size());
  out.PadTo(alignment);
  LIFELINE_CHECK(out.written() == layout.data_offset, "GGUF header size changed between planning and writing");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = tensors[i];
    const uint64_t start = out.written();
    const uint64_t expected = static_cast<uint64_t>(t.Bytes());
    const GgufWriteFn write = [&](std::span<const uint8_t> bytes) {
      if (out.written() - start + bytes.size() > expected) {
        throw InternalError(fmt::format("{}: tensor {} got more than its {} bytes", out.path().string(), t.name, expected));
      }
      out.Write(bytes.data(), bytes.size());
    };
    fill(i, t, write);
    if (out.written() - start != expected) {
      throw InternalError(fmt::format("{}: tensor {} got {} of its {} bytes", out.path().string(), t.name,
                                      out.written() - start, expected));
    }
    out.PadTo(alignment);
  }
  LIFELINE_CHECK(out.written() == layout.file_bytes, "GGUF file size differs from its plan");
  out.Commit();
  return layout;
}

// --- GgufFile --------------------------------------------------------------

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& kv : kvs) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || v->type != GgufValueType::kString) {
    throw MakeConfigError(path.string(), std::string(key), v ? "is " + v->Describe() : "missing", "a string");
  }
  return v->string;
}

int64_t GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || v->type == GgufValueType::kString || v->type == GgufValueType::kArray || IsFloatType(v->type)) {
    throw MakeConfigError(path.string(), std::string(key), v ? "is " + v->Describe() : "missing", "an integer");
  }
  return v->integer;
}

double GgufFile::GetReal(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr || v->type == GgufValueType::kString || v->type == GgufValueType::kArray) {
    throw MakeConfigError(path.string(), std::string(key), v ? "is " + v->Describe() : "missing", "a number");
  }
  return v->real;
}

GgufFile ReadGguf(const fs::path& path) {
  Reader r(path);
  GgufFile f;
  f.path = path;
  f.file_bytes = r.size();
  if (r.size() < 24) r.Fail(fmt::format("a file of {} bytes", r.size()));
  if (r.Get<uint32_t>() != kGgufMagic) r.Fail("no GGUF magic");
  f.version = r.Get<uint32_t>();
  if (f.version != 2 && f.version != 3) r.Fail(fmt::format("GGUF version {}", f.version), "version 2 or 3");
  const int64_t n_tensors = r.Get<int64_t>();
  const int64_t n_kv = r.Get<int64_t>();
  // Every entry takes at least 8 bytes of key/name length: bound the counts by the file size.
  const auto max_entries = static_cast<int64_t>(r.size() / 8);
  if (n_tensors < 0 || n_tensors > max_entries) r.Fail(fmt::format("tensor count {}", n_tensors));
  if (n_kv < 0 || n_kv > max_entries) r.Fail(fmt::format("metadata count {}", n_kv));
  for (int64_t k = 0; k < n_kv; ++k) {
    GgufKv kv;
    kv.key = r.String();
    kv.value = r.Value();
    f.kvs.push_back(std::move(kv));
  }
  if (const GgufValue* a = f.Find("general.alignment")) {
    if (a->type != GgufValueType::kUint32 || a->integer <= 0 || (a->integer & (a->integer - 1)) != 0) {
      throw MakeConfigError(path.string(), "general.alignment", "is " + a->Describe(), "a u32 power of two");
    }
    f.alignment = static_cast<uint32_t>(a->integer);
  }
  for (int64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = r.String();
    const uint32_t n_dims = r.Get<uint32_t>();
    if (n_dims < 1 || n_dims > static_cast<uint32_t>(kMaxDims)) {
      r.Fail(fmt::format("tensor {} with {} dimensions", t.name, n_dims));
    }
    for (uint32_t d = 0; d < n_dims; ++d) t.shape.push_back(r.Get<int64_t>());
    t.type = static_cast<GgmlType>(r.Get<int32_t>());
    t.offset = r.Get<uint64_t>();
    CheckTensor(t, path.string());
    f.tensors.push_back(std::move(t));
  }
  f.header_bytes = r.pos();
  f.data_offset = PadTo(f.header_bytes, f.alignment);
  uint64_t expected_offset = 0;
  for (const auto& t : f.tensors) {
    if (t.offset != expected_offset) {
      throw MakeConfigError(path.string(), t.name, fmt::format("data offset {}", t.offset),
                            fmt::format("{} (the previous tensors' sizes padded to {})", expected_offset, f.alignment));
    }
    const auto bytes = static_cast<uint64_t>(t.Bytes());
    if (f.data_offset + t.offset + bytes > f.file_bytes) {
      throw MakeConfigError(path.string(), t.name,
                            fmt::format("its bytes end at {} but the file has {} bytes",
                                        f.data_offset + t.offset + bytes, f.file_bytes),
                            "a complete file", "the file is truncated; delete it to have it written again");
    }
    expected_offset += PadTo(bytes, f.alignment);
  }
  return f;
}

std::vector<uint8_t> ReadGgufTensorBytes(const GgufFile& file, const GgufTensorInfo& tensor) {
  std::ifstream in(file.path, std::ios::binary);
  std::vector<uint8_t> out(static_cast<size_t>(tensor.Bytes()));
  in.seekg(static_cast<std::streamoff>(file.data_offset + tensor.offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!in) throw MakeConfigError(file.path.string(), tensor.name, "cannot read the tensor's bytes", "a complete file");
  return out;
}

}  // namespace lifeline::measure
