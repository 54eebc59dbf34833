#include "oci/image/digest.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/sys/io.h"
#include "core/sys/openssl.h"

namespace cryo::oci::image {

struct Sha256::State {
  const dyn::LibCrypto* crypto = nullptr;
  EVP_MD_CTX* ctx = nullptr;
  ~State() {
    if (ctx) crypto->EVP_MD_CTX_free(ctx);
  }
};

Result<Sha256> Sha256::start() {
  CRYO_ASSIGN(const dyn::LibCrypto* crypto, dyn::libcrypto().wrap("sha256"));
  Sha256 h;
  h.state_ = std::make_unique<State>();
  h.state_->crypto = crypto;
  h.state_->ctx = crypto->EVP_MD_CTX_new();
  if (!h.state_->ctx || crypto->EVP_DigestInit_ex(h.state_->ctx, crypto->EVP_sha256(), nullptr) != 1)
    return Error(ENOMEM, "sha256: OpenSSL cannot start a digest");
  return h;
}

Sha256::Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t size) { state_->crypto->EVP_DigestUpdate(state_->ctx, data, size); }

std::string Sha256::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  state_->crypto->EVP_DigestFinal_ex(state_->ctx, md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Result<std::string> sha256_of(std::string_view data) {
  CRYO_ASSIGN(Sha256 h, Sha256::start());
  h.update(data.data(), data.size());
  return h.finish();
}

Result<FileDigest> sha256_file(const std::string& path) {
  auto fd = open_file(path, O_RDONLY | O_CLOEXEC);
  if (!fd.ok()) return std::move(fd).error();
  CRYO_ASSIGN(Sha256 h, Sha256::start());
  FileDigest out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + path);
    if (n == 0) break;
    h.update(buf, static_cast<size_t>(n));
    out.size += n;
  }
  out.digest = h.finish();
  return out;
}

bool valid_digest(const std::string& digest) {
  if (digest.size() != 7 + 64 || !digest.starts_with("sha256:")) return false;
  for (size_t i = 7; i < digest.size(); ++i) {
    char c = digest[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace cryo::oci::image
