// sha256 digests of blobs, as OCI names them ("sha256:" and 64 hex digits).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/sys/result.h"

namespace cryo::oci::image {

class Sha256 {
 public:
  // Fails when OpenSSL's libcrypto (loaded at first use) cannot be loaded.
  static Result<Sha256> start();
  Sha256(Sha256&&) noexcept;
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  // "sha256:<hex>"; the hash cannot be updated afterwards.
  std::string finish();

 private:
  Sha256();
  struct State;
  std::unique_ptr<State> state_;
};

Result<std::string> sha256_of(std::string_view data);
// The digest and the size of a file's contents.
struct FileDigest {
  std::string digest;
  int64_t size = 0;
};
Result<FileDigest> sha256_file(const std::string& path);
// "sha256:" and exactly 64 lowercase hex digits: only such a digest may name
// a blob's path (a hostile "sha256:../../x" must not).
bool valid_digest(const std::string& digest);

}  // namespace cryo::oci::image
