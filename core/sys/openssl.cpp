#include "core/sys/openssl.h"

#include <openssl/opensslv.h>

namespace cryo::dyn {
namespace {

#define CRYO_SONAME(lib) "lib" lib ".so." CRYO_STRINGIFY(OPENSSL_VERSION_MAJOR)
#define CRYO_STRINGIFY(x) CRYO_STRINGIFY_(x)
#define CRYO_STRINGIFY_(x) #x

void fill_crypto(void* handle, LibCrypto* t, const char** missing) { CRYO_LIBCRYPTO_FUNCTIONS(CRYO_DYN_RESOLVE) }
void fill_ssl(void* handle, LibSsl* t, const char** missing) { CRYO_LIBSSL_FUNCTIONS(CRYO_DYN_RESOLVE) }

}  // namespace

// The sonames of the OpenSSL the headers are of (libssl.so.3 for 3.x).
Result<const LibCrypto*> libcrypto() { return load<LibCrypto>(CRYO_SONAME("crypto"), fill_crypto); }
Result<const LibSsl*> libssl() { return load<LibSsl>(CRYO_SONAME("ssl"), fill_ssl); }

}  // namespace cryo::dyn
