// RAII file descriptors.
#pragma once

#include <unistd.h>

#include <utility>

namespace cryo {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A descriptor owned by somebody else.
class BorrowedFd {
 public:
  BorrowedFd(int fd) : fd_(fd) {}  // NOLINT
  BorrowedFd(const UniqueFd& fd) : fd_(fd.get()) {}  // NOLINT
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace cryo
