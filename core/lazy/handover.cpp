#include "core/lazy/handover.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <cstring>

#include "core/sys/fdpass.h"
#include "core/sys/log.h"

namespace cryo::lazy {

uint64_t wanted_features() {
  return UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
         UFFD_FEATURE_THREAD_ID;
}

Result<HandoverClient> HandoverClient::connect(const std::string& socket_path) {
  HandoverClient c;
  c.sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.sock_) return errno_error("socket");
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return Error(ENAMETOOLONG, "lazy-pages socket " + socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(c.sock_.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) < 0)
    return errno_error("no lazy-pages daemon answers at " + socket_path + " (start `cryo lazy-pages` first)");
  return c;
}

Status HandoverClient::hand_over(pid_t pid, ptrace::Remote& r, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  if (ranges.empty()) return {};  // nothing of it comes later
  // Made in the process (its mm is the one the faults come from), copied out,
  // and closed there again: the process's fd table stays as recorded.
  CRYO_ASSIGN(long remote_fd, r.call("userfaultfd", SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK}));
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return errno_error("pidfd_open");
  UniqueFd uffd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), static_cast<int>(remote_fd), 0)));
  int err = errno;
  CRYO_TRY(r.call("close", SYS_close, {static_cast<uint64_t>(remote_fd)}));
  if (!uffd) return Error(err, "pidfd_getfd of the userfaultfd");
  struct uffdio_api api {};
  api.api = UFFD_API;
  api.features = wanted_features();
  if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0)
    return errno_error("UFFDIO_API: this kernel's userfaultfd lacks the events a lazy restore follows "
                       "(fork, mremap, madvise, munmap)");
  for (const auto& [start, end] : ranges) {
    struct uffdio_register reg {};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) {
      char buf[64];
      snprintf(buf, sizeof buf, "%lx-%lx", static_cast<unsigned long>(start), static_cast<unsigned long>(end));
      return errno_error(std::string("UFFDIO_REGISTER of ") + buf);
    }
  }
  Handover h;
  h.kind = kProcess;
  h.pid = pid;
  h.ranges = ranges.size();
  const int fds[] = {uffd.get(), pidfd.get()};
  CRYO_TRY(send_all(sock_.get(), &h, sizeof h, "handing the userfaultfd to the lazy-pages daemon", fds));
  std::vector<uint64_t> words;
  for (const auto& [s, e] : ranges) {
    words.push_back(s);
    words.push_back(e);
  }
  CRYO_TRY(send_all(sock_.get(), words.data(), words.size() * 8, "sending ranges to the lazy-pages daemon"));
  log::info("pid " + std::to_string(pid) + ": " + std::to_string(ranges.size()) + " mappings come lazily");
  return {};
}

Result<std::vector<uint8_t>> HandoverClient::fetch(pid_t pid, uint64_t addr, uint64_t npages) {
  struct {
    Handover h;
    uint64_t range[2];
  } request;
  request.h.kind = kFetch;
  request.h.pid = pid;
  request.h.ranges = 1;
  request.range[0] = addr;
  request.range[1] = addr + npages * 4096;
  CRYO_TRY(send_all(sock_.get(), &request, sizeof request, "asking the lazy-pages daemon for pages"));
  std::vector<uint8_t> bytes(npages * 4096);
  CRYO_ASSIGN(Received got, receive_all(sock_.get(), bytes.data(), bytes.size())
                                .wrap("receiving pages from the lazy-pages daemon"));
  if (got.bytes != bytes.size())
    return Error(ECONNRESET, "the lazy-pages daemon hung up instead of sending the pages at " + std::to_string(addr) +
                                 " (see its log: the source may have failed)");
  return bytes;
}

Status HandoverClient::done() {
  Handover h;
  h.kind = kDone;
  CRYO_TRY(send_all(sock_.get(), &h, sizeof h, "telling the lazy-pages daemon the restore is done"));
  sock_.reset();
  return {};
}

}  // namespace cryo::lazy
