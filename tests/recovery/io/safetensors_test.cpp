#include "recovery/io/safetensors.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include <ATen/ATen.h>

#include "common/error.hpp"
#include "tests/recovery/io/test_util.hpp"

namespace lifeline::recovery {
namespace {

using testing::TempDir;
using testing::WriteFile;

// A safetensors file from a raw header string and data bytes.
std::string RawFile(const std::string& header, const std::string& data, uint64_t header_len) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_len >> (8 * i)) & 0xff);
  return out + header + data;
}
std::string RawFile(const std::string& header, const std::string& data) {
  return RawFile(header, data, header.size());
}

// Expects ReadSafetensors(path) to throw ConfigError whose message names the
// file and contains `fragment`.
void ExpectBad(const std::filesystem::path& path, const std::string& fragment) {
  try {
    ReadSafetensors(path);
    ADD_FAILURE() << "no error for " << path << " (expected '" << fragment << "')";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << msg;
  }
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  const auto path = dir.path() / "t.safetensors";
  std::map<std::string, at::Tensor> in;
  in["f32"] = at::arange(12, at::kFloat).reshape({3, 4}) * 0.5;
  in["bf16"] = at::arange(6, at::kFloat).reshape({2, 3}).to(at::kBFloat16);
  in["f16"] = at::arange(5, at::kFloat).to(at::kHalf) - 2;
  in["f64"] = at::tensor({1.25, -2.5}, at::kDouble);
  in["i64"] = at::arange(-3, 4, at::kLong);
  in["i32"] = at::arange(7, at::kInt);
  in["u8"] = at::arange(255, 250, -1, at::kLong).to(at::kByte);
  in["bool"] = at::tensor({1, 0, 1}, at::kLong).to(at::kBool);
  in["scalar"] = at::scalar_tensor(3.5, at::kFloat);
  in["empty"] = at::zeros({0, 3}, at::kFloat);
  in["strided"] = at::arange(16, at::kFloat).reshape({4, 4}).t();  // non-contiguous view
  WriteSafetensors(path, in, {{"format", "pt"}, {"note", "lifeline test"}});

  const auto out = ReadSafetensors(path);
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    EXPECT_EQ(out.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(out.at(name).sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(out.at(name), t.contiguous())) << name;
  }
  const auto meta = ReadSafetensorsMetadata(path);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at("note"), "lifeline test");
  // Data buffer starts 8-byte aligned, entries are sorted by offset and contiguous.
  const auto header = ReadSafetensorsHeader(path);
  ASSERT_EQ(header.size(), in.size());
  for (size_t i = 1; i < header.size(); ++i)
    EXPECT_EQ(header[i].begin_bytes, header[i - 1].end_bytes);
}

TEST(Safetensors, WritesAtomicallyAndOverwrites) {
  TempDir dir;
  const auto path = dir.path() / "w.safetensors";
  WriteSafetensors(path, {{"a", at::ones({2}, at::kFloat)}});
  WriteSafetensors(path, {{"b", at::zeros({3}, at::kFloat)}});
  const auto out = ReadSafetensors(path);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out.count("b"));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1) << "temporary file left behind";
}

TEST(Safetensors, RejectsUnwritablePathAndUnsupportedDtype) {
  TempDir dir;
  // A path under a regular file cannot be created, whoever runs the test
  // (missing parent directories are created).
  std::ofstream(dir.path() / "plain") << "x";
  EXPECT_THROW(WriteSafetensors(dir.path() / "plain" / "dir.safetensors", {{"a", at::ones({1})}}), ConfigError);
  EXPECT_THROW(WriteSafetensors(dir.path() / "c.safetensors",
                                {{"c", at::ones({1}, at::kComplexFloat)}}),
               ConfigError);
}

TEST(Safetensors, HandBuiltFileReads) {
  // The layout from the format's README, built by hand: two F32 tensors.
  TempDir dir;
  const auto path = dir.path() / "hand.safetensors";
  const float values[3] = {1.0f, -2.0f, 0.25f};
  std::string data(reinterpret_cast<const char*>(values), sizeof values);
  WriteFile(path, RawFile(R"({"__metadata__": {"k": "v"},
                              "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                              "y": {"dtype": "F32", "shape": [1, 2], "data_offsets": [4, 12]}})",
                          data));
  const auto t = ReadSafetensors(path);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_FLOAT_EQ(t.at("x").item<float>(), 1.0f);
  EXPECT_EQ(t.at("y").sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_FLOAT_EQ(t.at("y")[0][1].item<float>(), 0.25f);
}

TEST(Safetensors, RejectsTruncatedAndMalformedFiles) {
  TempDir dir;
  {
    SCOPED_TRACE("MissingFile");
    ExpectBad(dir.path() / "absent.safetensors", "not found");
  }
  {
    SCOPED_TRACE("TruncatedBeforeHeaderLength");
    const auto path = dir.path() / "short.safetensors";
    WriteFile(path, std::string("\x10\x00\x00", 3));
    ExpectBad(path, "truncated");
  }
  {
    SCOPED_TRACE("HeaderLengthPastEndOfFile");
    const auto path = dir.path() / "len.safetensors";
    WriteFile(path, RawFile("{}", "", 4096));
    ExpectBad(path, "runs past the end of the file");
  }
  {
    SCOPED_TRACE("HugeHeaderLength");
    const auto path = dir.path() / "huge.safetensors";
    WriteFile(path, RawFile("{}", "", ~0ull));
    ExpectBad(path, "exceeds");
  }
  {
    SCOPED_TRACE("NonJsonHeader");
    const auto path = dir.path() / "nojson.safetensors";
    WriteFile(path, RawFile("{\"a\": [1, 2", ""));
    ExpectBad(path, "malformed JSON");
    const auto path2 = dir.path() / "array.safetensors";
    WriteFile(path2, RawFile("[1, 2]", ""));
    ExpectBad(path2, "not a JSON object");
  }
  {
    SCOPED_TRACE("ValidFileCutShort");
    const auto path = dir.path() / "cut.safetensors";
    WriteSafetensors(path, {{"w", at::ones({64}, at::kFloat)}});
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
    ExpectBad(path, "outside the 246-byte data buffer");
  }
}

TEST(Safetensors, HeaderNamingATensorTwiceIsRejected) {
  // A JSON reader would keep one of the two entries; the file is lying either way.
  TempDir dir;
  const auto path = dir.path() / "twice.safetensors";
  WriteFile(path, RawFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                              "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                          std::string(8, '\0')));
  ExpectBad(path, "key 'w': duplicate key");
}

TEST(Safetensors, RejectsLyingTensorEntries) {
  TempDir dir;
  {
    SCOPED_TRACE("OffsetsOutOfBounds");
    const auto path = dir.path() / "oob.safetensors";
    WriteFile(path, RawFile(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                            std::string(8, '\0')));  // 8 bytes present, 16 promised
    ExpectBad(path, "outside the 8-byte data buffer");
  }
  {
    SCOPED_TRACE("OverlappingOffsets");
    const auto path = dir.path() / "overlap.safetensors";
    WriteFile(path, RawFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            std::string(12, '\0')));
    ExpectBad(path, "overlap");
  }
  {
    SCOPED_TRACE("MisorderedOffsets");
    const auto path = dir.path() / "order.safetensors";
    WriteFile(path, RawFile(R"({"a": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}})",
                            std::string(8, '\0')));
    ExpectBad(path, "end before they begin");
  }
  {
    SCOPED_TRACE("ShapeAndDtypeDisagreeWithByteLength");
    const auto path = dir.path() / "mismatch.safetensors";
    WriteFile(path, RawFile(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                            std::string(8, '\0')));
    ExpectBad(path, "need 12 bytes");
    const auto path2 = dir.path() / "negative.safetensors";
    WriteFile(path2, RawFile(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
                             std::string(8, '\0')));
    ExpectBad(path2, "non-negative integer");
    const auto path3 = dir.path() / "overflow.safetensors";
    WriteFile(path3, RawFile(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296],
                                       "data_offsets": [0, 8]}})",
                             std::string(8, '\0')));
    ExpectBad(path3, "overflows");
  }
  {
    SCOPED_TRACE("UnknownDtype");
    const auto path = dir.path() / "dtype.safetensors";
    WriteFile(path, RawFile(R"({"a": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 2]}})",
                            std::string(2, '\0')));
    ExpectBad(path, "unknown or unsupported dtype 'Q4_K'");
  }
  {
    SCOPED_TRACE("MissingEntryKeys");
    const auto path = dir.path() / "keys.safetensors";
    WriteFile(path, RawFile(R"({"a": {"dtype": "F32", "shape": [1]}})", std::string(4, '\0')));
    ExpectBad(path, "missing 'data_offsets'");
  }
}

}  // namespace
}  // namespace lifeline::recovery
