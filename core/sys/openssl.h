// OpenSSL, loaded when TLS (the page server's --tls) or a sha256 (OCI image
// blobs) is first needed: linked in, libssl and libcrypto cost every start of
// cryo their loading, relocation and CPU probing (~1.2 ms of CPU of a 3 ms
// `cryo --version` here), which no tiny dump or restore uses.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/sys/dynlib.h"
#include "core/sys/result.h"

namespace cryo::dyn {

#define CRYO_LIBCRYPTO_FUNCTIONS(X)                                                                           \
  X(BIO_get_data) X(BIO_get_new_index) X(BIO_meth_new) X(BIO_meth_set_create) X(BIO_meth_set_ctrl)            \
  X(BIO_meth_set_read) X(BIO_meth_set_write) X(BIO_new) X(BIO_set_data) X(BIO_set_flags) X(BIO_set_init)      \
  X(BIO_test_flags) X(ERR_error_string_n) X(ERR_get_error) X(EVP_DigestFinal_ex) X(EVP_DigestInit_ex)         \
  X(EVP_DigestUpdate) X(EVP_MD_CTX_free) X(EVP_MD_CTX_new) X(EVP_sha256) X(X509_VERIFY_PARAM_set1_ip_asc)    \
  X(X509_verify_cert_error_string)

// SSL_CTX_ctrl serves the SSL_CTX_set_min_proto_version macro.
#define CRYO_LIBSSL_FUNCTIONS(X)                                                                                   \
  X(SSL_CTX_check_private_key) X(SSL_CTX_ctrl) X(SSL_CTX_free) X(SSL_CTX_load_verify_locations) X(SSL_CTX_new)    \
  X(SSL_CTX_set_default_verify_paths) X(SSL_CTX_set_verify) X(SSL_CTX_use_PrivateKey_file)                        \
  X(SSL_CTX_use_certificate_chain_file) X(SSL_accept) X(SSL_connect) X(SSL_free) X(SSL_get0_param)               \
  X(SSL_get_error) X(SSL_get_verify_result) X(SSL_new) X(SSL_read_ex) X(SSL_set1_host) X(SSL_set_bio)            \
  X(SSL_write_ex) X(TLS_client_method) X(TLS_server_method)

struct LibCrypto {
  CRYO_LIBCRYPTO_FUNCTIONS(CRYO_DYN_POINTER)
};
struct LibSsl {
  CRYO_LIBSSL_FUNCTIONS(CRYO_DYN_POINTER)
};

// Loaded once (any thread); the error names the library and why it failed.
Result<const LibCrypto*> libcrypto();
Result<const LibSsl*> libssl();

}  // namespace cryo::dyn
