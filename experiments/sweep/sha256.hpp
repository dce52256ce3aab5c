#pragma once
// SHA-256 (FIPS 180-4), used for stable cell ids and input-file checksums.
// Computed by OpenSSL's libcrypto; tested against the FIPS test vectors.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace lifeline::sweep {

// Lower-case hex digest (64 characters) of `data`.
std::string Sha256Hex(std::string_view data);
// Digest of a file's bytes; throws ConfigError when it cannot be read.
std::string Sha256File(const std::filesystem::path& path);

}  // namespace lifeline::sweep
