// A byte stream to or from another cryo: TCP, or TLS over TCP (OpenSSL)
// when certificates are given. The page server, the dump that sends it
// pages and the lazy-pages daemon all talk through one of these.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/sys/fd.h"
#include "core/sys/result.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace cryo::pageserver {

struct TlsOptions {
  bool enabled = false;
  std::string cacert;  // the CA both sides check the other's certificate against (system CAs when empty)
  std::string cert, key;
  bool no_cn_verify = false;  // the client does not match the server's name or address to its certificate
};

struct Endpoint {
  std::string address;  // a name or an IPv4/IPv6 address; empty: every address (listen only)
  int port = 0;
  TlsOptions tls;
  std::string describe() const;  // "ADDR:PORT"
};

class Channel {
 public:
  // Connects (and shakes hands over TLS when asked).
  static Result<std::unique_ptr<Channel>> connect(const Endpoint& to);
  // A listening socket; *bound_port is the port it got (for port 0).
  static Result<UniqueFd> listen(const Endpoint& at, int* bound_port);
  // Waits for one connection on a listening socket (and its TLS handshake).
  static Result<std::unique_ptr<Channel>> accept(int listen_fd, const Endpoint& at);
  ~Channel();

  // Sends every byte of the pieces.
  Status send(const struct iovec* pieces, size_t count);
  // Receives exactly `size` bytes; the peer closing first is an error
  // (ECONNRESET) that says how much was missing.
  Status recv(void* data, size_t size);
  // Whether the peer closed the stream cleanly before any byte of a frame.
  Status recv_or_eof(void* data, size_t size, bool* eof);
  // Limits how long one send or receive may block (0: forever).
  void set_timeout(int seconds);
  int fd() const { return fd_.get(); }

 private:
  Channel() = default;
  Status handshake(const Endpoint& ep, bool server);
  UniqueFd fd_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string peer_;
};

}  // namespace cryo::pageserver
