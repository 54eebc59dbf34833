#include "core/sys/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

namespace cryo {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode) {
  return open_at(AT_FDCWD, path, flags, mode);
}

Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("open " + path);
  return UniqueFd(fd);
}

Result<std::string> read_fd(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  CRYO_ASSIGN(UniqueFd fd, open_file(path, O_RDONLY));
  return read_fd(fd.get()).wrap(path);
}

Result<std::string> read_link(const std::string& path) {
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) return errno_error("readlink " + path);
    if (static_cast<size_t>(n) < buf.size()) return std::string(buf.data(), static_cast<size_t>(n));
    buf.resize(buf.size() * 4);
  }
}

Status write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write");
    if (n == 0) return Error(EIO, "write returned 0");
    p += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

Status write_all(int fd, std::string_view data) { return write_all(fd, data.data(), data.size()); }

Status pwrite_all(int fd, const void* data, size_t size, off_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("pwrite");
    if (n == 0) return Error(EIO, "pwrite returned 0");
    p += n;
    offset += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

Status pread_all(int fd, void* data, size_t size, off_t offset) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("pread");
    if (n == 0) return Error(EIO, "unexpected end of file");
    p += n;
    offset += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

Status write_file_atomic(const std::string& path, std::string_view data, Durability durability) {
  std::string tmp = path + "." + std::to_string(::getpid()) + ".tmp";
  Status status = [&]() -> Status {
    CRYO_ASSIGN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    CRYO_TRY(write_all(fd.get(), data).wrap(tmp));
    if (durability == Durability::kSynced && ::fsync(fd.get()) < 0) return errno_error("fsync " + tmp);
    if (::rename(tmp.c_str(), path.c_str()) < 0) return errno_error("rename " + tmp);
    return {};
  }();
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

}  // namespace cryo
