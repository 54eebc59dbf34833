#include "core/pageserver/channel.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <climits>
#include <cstring>
#include <vector>

#include "core/sys/openssl.h"

namespace cryo::pageserver {
namespace {

// Set by the first TLS handshake, before any other OpenSSL call.
const dyn::LibSsl* g_ssl = nullptr;
const dyn::LibCrypto* g_crypto = nullptr;

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
// the peer is gone; this one sends with MSG_NOSIGNAL, so a page server that
// goes away fails the dump with an error instead of killing cryo.
int bio_write(BIO* b, const char* data, int size) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(g_crypto->BIO_get_data(b)));
  for (;;) {
    ssize_t n = ::send(fd, data, static_cast<size_t>(size), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return static_cast<int>(n);
  }
}
int bio_read(BIO* b, char* data, int size) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(g_crypto->BIO_get_data(b)));
  for (;;) {
    ssize_t n = ::recv(fd, data, static_cast<size_t>(size), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) g_crypto->BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    return static_cast<int>(n);
  }
}
long bio_ctrl(BIO* b, int cmd, long, void*) {
  if (cmd == BIO_CTRL_FLUSH) return 1;
  if (cmd == BIO_CTRL_EOF) return g_crypto->BIO_test_flags(b, BIO_FLAGS_IN_EOF) ? 1 : 0;
  return 0;
}
int bio_create(BIO* b) {
  g_crypto->BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = g_crypto->BIO_meth_new(g_crypto->BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cryo socket");
    g_crypto->BIO_meth_set_write(m, bio_write);
    g_crypto->BIO_meth_set_read(m, bio_read);
    g_crypto->BIO_meth_set_ctrl(m, bio_ctrl);
    g_crypto->BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

// Every error OpenSSL queued, oldest first.
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = g_crypto->ERR_get_error()) {
    char buf[256];
    g_crypto->ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

Result<SSL_CTX*> make_context(const TlsOptions& tls, bool server) {
  if (tls.cert.empty() || tls.key.empty()) return Error(EINVAL, "--tls needs --tls-cert and --tls-key");
  SSL_CTX* ctx = g_ssl->SSL_CTX_new(server ? g_ssl->TLS_server_method() : g_ssl->TLS_client_method());
  if (!ctx) return Error(EINVAL, "TLS: " + ssl_errors());
  auto fail = [&](const std::string& what) {
    g_ssl->SSL_CTX_free(ctx);
    return Error(EINVAL, "TLS: " + what + ": " + ssl_errors());
  };
  g_ssl->SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, nullptr);
  if (g_ssl->SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1) return fail("certificate " + tls.cert);
  if (g_ssl->SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) return fail("key " + tls.key);
  if (g_ssl->SSL_CTX_check_private_key(ctx) != 1) return fail("key " + tls.key + " does not match " + tls.cert);
  int loaded = tls.cacert.empty() ? g_ssl->SSL_CTX_set_default_verify_paths(ctx)
                                  : g_ssl->SSL_CTX_load_verify_locations(ctx, tls.cacert.c_str(), nullptr);
  if (loaded != 1) return fail("CA certificate " + (tls.cacert.empty() ? "(system)" : tls.cacert));
  // Both sides prove who they are: pages are the whole memory of a tree.
  g_ssl->SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
  return ctx;
}

void set_socket_options(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  // Data not acknowledged for this long means the peer is gone.
  unsigned timeout_ms = 30000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof timeout_ms);
}

Result<struct addrinfo*> resolve(const Endpoint& ep, bool passive) {
  struct addrinfo hints {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  struct addrinfo* res = nullptr;
  std::string port = std::to_string(ep.port);
  int rc = ::getaddrinfo(ep.address.empty() ? nullptr : ep.address.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Error(EINVAL, "address " + ep.describe() + ": " + gai_strerror(rc));
  return res;
}

}  // namespace

std::string Endpoint::describe() const {
  std::string host = address.empty() ? "*" : address;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(port);
}

Channel::~Channel() {
  if (ssl_) g_ssl->SSL_free(ssl_);
  if (ctx_) g_ssl->SSL_CTX_free(ctx_);
}

Status Channel::handshake(const Endpoint& ep, bool server) {
  if (!ep.tls.enabled) return {};
  CRYO_ASSIGN(g_crypto, dyn::libcrypto().wrap("TLS"));
  CRYO_ASSIGN(g_ssl, dyn::libssl().wrap("TLS"));
  CRYO_ASSIGN(ctx_, make_context(ep.tls, server));
  ssl_ = g_ssl->SSL_new(ctx_);
  if (!ssl_) return Error(EINVAL, "TLS: " + ssl_errors());
  BIO* bio = g_crypto->BIO_new(socket_method());
  g_crypto->BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd_.get())));
  g_ssl->SSL_set_bio(ssl_, bio, bio);
  if (!server && !ep.tls.no_cn_verify) {
    // The server's certificate must name the address dialled.
    in6_addr any;
    bool is_ip = ::inet_pton(AF_INET, ep.address.c_str(), &any) == 1 || ::inet_pton(AF_INET6, ep.address.c_str(), &any) == 1;
    int ok = is_ip ? g_crypto->X509_VERIFY_PARAM_set1_ip_asc(g_ssl->SSL_get0_param(ssl_), ep.address.c_str())
                   : g_ssl->SSL_set1_host(ssl_, ep.address.c_str());
    if (ok != 1) return Error(EINVAL, "TLS: cannot check the name " + ep.address + ": " + ssl_errors());
  }
  int rc = server ? g_ssl->SSL_accept(ssl_) : g_ssl->SSL_connect(ssl_);
  if (rc != 1) {
    std::string why = ssl_errors();
    long verify = g_ssl->SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) why += " (certificate: " + std::string(g_crypto->X509_verify_cert_error_string(verify)) + ")";
    return Error(EPROTO, "TLS handshake with " + peer_ + " failed: " + why);
  }
  return {};
}

Result<std::unique_ptr<Channel>> Channel::connect(const Endpoint& to) {
  if (to.address.empty()) return Error(EINVAL, "no address to connect to (--address)");
  CRYO_ASSIGN(struct addrinfo * res, resolve(to, false));
  std::unique_ptr<Channel> ch(new Channel());
  ch->peer_ = to.describe();
  int err = 0;
  for (auto* ai = res; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      err = errno;
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      ch->fd_ = std::move(fd);
      break;
    }
    err = errno;
  }
  ::freeaddrinfo(res);
  if (!ch->fd_) return Error(err, "connect to " + to.describe());
  set_socket_options(ch->fd_.get());
  CRYO_TRY(ch->handshake(to, false));
  return ch;
}

Result<UniqueFd> Channel::listen(const Endpoint& at, int* bound_port) {
  CRYO_ASSIGN(struct addrinfo * res, resolve(at, true));
  // An IPv6 wildcard takes IPv4 too; prefer it when listening everywhere.
  struct addrinfo* pick = res;
  for (auto* ai = res; ai && at.address.empty(); ai = ai->ai_next)
    if (ai->ai_family == AF_INET6) pick = ai;
  UniqueFd fd(::socket(pick->ai_family, pick->ai_socktype | SOCK_CLOEXEC, pick->ai_protocol));
  if (!fd) {
    ::freeaddrinfo(res);
    return errno_error("socket");
  }
  int one = 1, zero = 0;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (pick->ai_family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  int rc = ::bind(fd.get(), pick->ai_addr, pick->ai_addrlen);
  int err = errno;
  ::freeaddrinfo(res);
  if (rc < 0) return Error(err, "listen on " + at.describe());
  if (::listen(fd.get(), 4) < 0) return errno_error("listen on " + at.describe());
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (::getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), &len) == 0)
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

Result<std::unique_ptr<Channel>> Channel::accept(int listen_fd, const Endpoint& at) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd;
  do fd = ::accept4(listen_fd, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("accept on " + at.describe());
  std::unique_ptr<Channel> ch(new Channel());
  ch->fd_.reset(fd);
  char host[INET6_ADDRSTRLEN + 8] = "?";
  char port[16] = "?";
  ::getnameinfo(reinterpret_cast<struct sockaddr*>(&ss), len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
  ch->peer_ = std::string(host) + ":" + port;
  set_socket_options(fd);
  CRYO_TRY(ch->handshake(at, true));
  return ch;
}

void Channel::set_timeout(int seconds) {
  struct timeval tv {seconds, 0};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

Status Channel::send(const struct iovec* pieces, size_t count) {
  if (ssl_) {
    for (size_t i = 0; i < count; i++) {
      size_t written = 0;
      if (pieces[i].iov_len && g_ssl->SSL_write_ex(ssl_, pieces[i].iov_base, pieces[i].iov_len, &written) != 1)
        return Error(errno ? errno : EPIPE, "send to " + peer_ + " (TLS): " + ssl_errors());
    }
    return {};
  }
  std::vector<struct iovec> left(pieces, pieces + count);
  size_t at = 0;
  while (at < left.size()) {
    struct msghdr msg {};
    msg.msg_iov = left.data() + at;
    msg.msg_iovlen = std::min<size_t>(left.size() - at, IOV_MAX);
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("send to " + peer_);
    for (size_t done = static_cast<size_t>(n); done > 0 || (at < left.size() && left[at].iov_len == 0);) {
      if (done >= left[at].iov_len) {
        done -= left[at].iov_len;
        at++;
      } else {
        left[at].iov_base = static_cast<char*>(left[at].iov_base) + done;
        left[at].iov_len -= done;
        done = 0;
      }
      if (at == left.size()) break;
    }
  }
  return {};
}

Status Channel::recv_or_eof(void* data, size_t size, bool* eof) {
  *eof = false;
  size_t got = 0;
  while (got < size) {
    ssize_t n;
    if (ssl_) {
      size_t r = 0;
      int rc = g_ssl->SSL_read_ex(ssl_, static_cast<char*>(data) + got, size - got, &r);
      if (rc != 1) {
        int e = g_ssl->SSL_get_error(ssl_, rc);
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) n = 0;
        else if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
          return Error(ETIMEDOUT, "receive from " + peer_ + ": no answer in time");
        else return Error(errno ? errno : EPROTO, "receive from " + peer_ + " (TLS): " + ssl_errors());
      } else {
        n = static_cast<ssize_t>(r);
      }
    } else {
      n = ::recv(fd_.get(), static_cast<char*>(data) + got, size - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return Error(ETIMEDOUT, "receive from " + peer_ + ": no answer in time");
      if (n < 0) return errno_error("receive from " + peer_);
    }
    if (n == 0) {
      if (got == 0) {
        *eof = true;
        return {};
      }
      return Error(ECONNRESET, peer_ + " closed the connection " + std::to_string(size - got) +
                                   " bytes short of what it announced (a truncated stream)");
    }
    got += static_cast<size_t>(n);
  }
  return {};
}

Status Channel::recv(void* data, size_t size) {
  bool eof = false;
  CRYO_TRY(recv_or_eof(data, size, &eof));
  if (eof) return Error(ECONNRESET, peer_ + " closed the connection");
  return {};
}

}  // namespace cryo::pageserver
