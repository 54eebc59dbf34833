#include "core/ns/net/rtnl.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace cryo::ns::net {

RtRequest::RtRequest(uint16_t type, uint16_t flags, const void* header, size_t size) {
  buf_.resize(NLMSG_LENGTH(NLMSG_ALIGN(size)));
  auto* h = reinterpret_cast<nlmsghdr*>(buf_.data());
  h->nlmsg_type = type;
  h->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  std::memcpy(NLMSG_DATA(h), header, size);
}

RtRequest& RtRequest::put(uint16_t type, const void* data, size_t size) {
  size_t at = buf_.size();
  buf_.resize(at + RTA_SPACE(size));
  auto* a = reinterpret_cast<rtattr*>(buf_.data() + at);
  a->rta_type = type;
  a->rta_len = static_cast<uint16_t>(RTA_LENGTH(size));
  if (size) std::memcpy(RTA_DATA(a), data, size);
  return *this;
}

RtRequest& RtRequest::put_str(uint16_t type, std::string_view s) {
  std::string z(s);
  return put(type, z.c_str(), z.size() + 1);
}

size_t RtRequest::begin(uint16_t type) {
  size_t mark = buf_.size();
  put(type, nullptr, 0);
  return mark;
}

void RtRequest::end(size_t mark) {
  reinterpret_cast<rtattr*>(buf_.data() + mark)->rta_len = static_cast<uint16_t>(buf_.size() - mark);
}

RtRequest& RtRequest::raw(const void* data, size_t size) {
  size_t at = buf_.size();
  buf_.resize(at + NLMSG_ALIGN(size));
  std::memcpy(buf_.data() + at, data, size);
  return *this;
}

RtAttrs::RtAttrs(const void* data, size_t size) : data_(static_cast<const char*>(data)), size_(size) {
  int left = static_cast<int>(size);
  for (auto* a = reinterpret_cast<const rtattr*>(data); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    uint16_t type = a->rta_type & NLA_TYPE_MASK;
    if (type >= slots_.size()) slots_.resize(type + 1);
    slots_[type] = {static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)};
  }
}

std::string_view RtAttrs::bytes(uint16_t type) const {
  if (!has(type)) return {};
  return {slots_[type].data, slots_[type].size};
}

uint32_t RtAttrs::u32(uint16_t type, uint32_t fallback) const {
  auto b = bytes(type);
  if (b.size() < 4) return fallback;
  uint32_t v;
  std::memcpy(&v, b.data(), 4);
  return v;
}

std::string RtAttrs::str(uint16_t type) const {
  auto b = bytes(type);
  return std::string(b.data(), ::strnlen(b.data(), b.size()));
}

void RtAttrs::each(const std::function<void(uint16_t, std::string_view)>& fn) const {
  int left = static_cast<int>(size_);
  for (auto* a = reinterpret_cast<const rtattr*>(data_); RTA_OK(a, left); a = RTA_NEXT(a, left))
    fn(a->rta_type & NLA_TYPE_MASK, {static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)});
}

Result<Rtnl> Rtnl::open() {
  Rtnl r;
  r.fd_.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!r.fd_.valid()) return errno_error("socket(NETLINK_ROUTE)");
  int one = 1;
  ::setsockopt(r.fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  ::setsockopt(r.fd_.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  return r;
}

Status Rtnl::send(RtRequest& request) {
  auto& b = request.bytes();
  auto* h = reinterpret_cast<nlmsghdr*>(b.data());
  h->nlmsg_len = static_cast<uint32_t>(b.size());
  h->nlmsg_seq = ++seq_;
  if (::send(fd_.get(), b.data(), b.size(), 0) < 0) return errno_error("netlink send");
  return {};
}

namespace {

// The kernel's extended ack text, if it gave one.
std::string ext_ack(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  size_t off = sizeof(nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += e->msg.nlmsg_len - sizeof(nlmsghdr);
  if (NLMSG_LENGTH(off) > h->nlmsg_len) return "";
  RtAttrs a(static_cast<const char*>(NLMSG_DATA(h)) + off, h->nlmsg_len - NLMSG_LENGTH(off));
  return a.str(NLMSGERR_ATTR_MSG);
}

}  // namespace

Status Rtnl::call(RtRequest& request) {
  reinterpret_cast<nlmsghdr*>(request.bytes().data())->nlmsg_flags |= NLM_F_ACK;
  return dump(request, [](const nlmsghdr*) -> Status { return {}; });
}

Status Rtnl::dump(RtRequest& request, const std::function<Status(const nlmsghdr*)>& fn) {
  CRYO_TRY(send(request));
  std::vector<char> buf(1 << 16);
  Status first;  // the callback's first failure; the dump is read to its end anyway
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("netlink recv");
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_DONE) return first;
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
        if (err == 0) return first;
        std::string why = ext_ack(h);
        return Error(err, why.empty() ? "netlink" : "netlink: " + why);
      }
      if (first.ok()) first = fn(h);
    }
  }
}

std::string addr_text(int family, std::string_view raw) {
  char text[INET6_ADDRSTRLEN] = "";
  if ((family == AF_INET && raw.size() == 4) || (family == AF_INET6 && raw.size() == 16))
    ::inet_ntop(family, raw.data(), text, sizeof text);
  return text;
}

bool addr_bytes(int family, const std::string& text, std::string* raw) {
  char buf[16];
  if (::inet_pton(family, text.c_str(), buf) != 1) return false;
  raw->assign(buf, family == AF_INET ? 4 : 16);
  return true;
}

}  // namespace cryo::ns::net
