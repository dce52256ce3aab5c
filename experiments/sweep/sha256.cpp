#include "experiments/sweep/sha256.hpp"

#include <openssl/evp.h>

#include <array>
#include <fstream>
#include <memory>

#include "common/error.hpp"

namespace lifeline::sweep {

namespace {

// One SHA-256 computation through OpenSSL's EVP interface.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    LIFELINE_CHECK(ctx_ != nullptr && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1,
                   "OpenSSL cannot start a SHA-256 digest");
  }
  void Update(const void* p, size_t n) {
    LIFELINE_CHECK(EVP_DigestUpdate(ctx_.get(), p, n) == 1, "OpenSSL SHA-256 update failed");
  }
  std::string HexDigest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    LIFELINE_CHECK(EVP_DigestFinal_ex(ctx_.get(), md.data(), &len) == 1 && len == 32,
                   "OpenSSL SHA-256 final failed");
    static const char* kHex = "0123456789abcdef";
    std::string out;
    out.reserve(2 * len);
    for (unsigned int i = 0; i < len; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

}  // namespace

std::string Sha256Hex(std::string_view data) {
  Sha256 s;
  s.Update(data.data(), data.size());
  return s.HexDigest();
}

std::string Sha256File(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw MakeConfigError(path.string(), "", "cannot read the file to checksum it", "a readable file",
                          "check the path");
  }
  Sha256 s;
  std::array<char, 1 << 16> buf{};
  while (in) {
    in.read(buf.data(), buf.size());
    const std::streamsize got = in.gcount();
    if (got > 0) s.Update(buf.data(), static_cast<size_t>(got));
  }
  if (in.bad()) {
    throw MakeConfigError(path.string(), "", "cannot read the file to checksum it", "a readable file",
                          "check the path");
  }
  return s.HexDigest();
}

}  // namespace lifeline::sweep
