// A small rtnetlink client: build a request with its attributes, send it,
// read the acknowledgement or every message of a dump. The socket belongs to
// the network namespace its thread was in when it was opened.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::ns::net {

// One request: a netlink header, the family header, attributes.
class RtRequest {
 public:
  RtRequest(uint16_t type, uint16_t flags, const void* header, size_t size);
  RtRequest& put(uint16_t type, const void* data, size_t size);
  RtRequest& put_u32(uint16_t type, uint32_t value) { return put(type, &value, sizeof value); }
  RtRequest& put_str(uint16_t type, std::string_view s);  // with its NUL
  // Nested attributes: begin returns a mark that end closes.
  size_t begin(uint16_t type);
  void end(size_t mark);
  // Raw bytes inside the current nest (a nested ifinfomsg, as veth's peer wants).
  RtRequest& raw(const void* data, size_t size);
  std::vector<char>& bytes() { return buf_; }

 private:
  std::vector<char> buf_;
};

// The attributes of one message, by type (the last one wins).
class RtAttrs {
 public:
  RtAttrs(const void* data, size_t size);
  bool has(uint16_t type) const { return type < slots_.size() && slots_[type].data; }
  std::string_view bytes(uint16_t type) const;
  uint32_t u32(uint16_t type, uint32_t fallback = 0) const;
  std::string str(uint16_t type) const;  // without its NUL
  // Every attribute, in order (for those kept as they are).
  void each(const std::function<void(uint16_t type, std::string_view value)>& fn) const;

 private:
  struct Slot {
    const char* data = nullptr;
    size_t size = 0;
  };
  std::vector<Slot> slots_;
  const char* data_;
  size_t size_;
};

class Rtnl {
 public:
  // A socket in the network namespace of the calling thread.
  static Result<Rtnl> open();
  // Sends the request and waits for its acknowledgement.
  Status call(RtRequest& request);
  // Sends a dump request; fn gets each message's family header and attributes.
  Status dump(RtRequest& request, const std::function<Status(const nlmsghdr*)>& fn);

 private:
  Status send(RtRequest& request);
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

// Pointer to the family header of a message, and its attributes after it.
template <typename T>
const T* payload(const nlmsghdr* h) {
  return static_cast<const T*>(NLMSG_DATA(h));
}
template <typename T>
RtAttrs attrs_of(const nlmsghdr* h) {
  size_t head = NLMSG_ALIGN(sizeof(T));
  size_t len = h->nlmsg_len >= NLMSG_LENGTH(head) ? h->nlmsg_len - NLMSG_LENGTH(head) : 0;
  return RtAttrs(static_cast<const char*>(NLMSG_DATA(h)) + head, len);
}

// Text of an address of a family (AF_INET, AF_INET6), and back ("" on failure / empty).
std::string addr_text(int family, std::string_view raw);
bool addr_bytes(int family, const std::string& text, std::string* raw);

}  // namespace cryo::ns::net
