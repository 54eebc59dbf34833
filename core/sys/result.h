// Error and Result<T>: every fallible call in core/ returns one of these.
// An Error carries the errno (0 when none applies) and a context string that
// each caller widens with wrap(): "pid 12 fd 7: open /x: No such file".
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace cryo {

class [[nodiscard]] Error {
 public:
  Error(int err, std::string message) : errno_(err), message_(std::move(message)) {}
  explicit Error(std::string message) : Error(0, std::move(message)) {}

  int code() const { return errno_; }
  const std::string& context() const { return message_; }

  // The full message a user sees: context and, if set, the errno text.
  std::string message() const {
    if (errno_ == 0) return message_;
    return message_ + ": " + std::strerror(errno_);
  }

  // Prepends the caller's context.
  Error wrap(const std::string& outer) && {
    message_ = outer + ": " + message_;
    return std::move(*this);
  }
  Error wrap(const std::string& outer) const& {
    Error copy = *this;
    return std::move(copy).wrap(outer);
  }

 private:
  int errno_;
  std::string message_;
};

// An Error built from the current errno.
inline Error errno_error(std::string message) { return Error(errno, std::move(message)); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

  Result wrap(const std::string& outer) && {
    if (ok()) return std::move(*this);
    return std::move(*this).error().wrap(outer);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }

  Result wrap(const std::string& outer) && {
    if (ok()) return {};
    return std::move(*error_).wrap(outer);
  }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace cryo

#define CRYO_CONCAT_INNER(a, b) a##b
#define CRYO_CONCAT(a, b) CRYO_CONCAT_INNER(a, b)

// CRYO_TRY(expr): returns the error of a failed Status/Result from the enclosing function.
#define CRYO_TRY(expr)                                             \
  do {                                                             \
    auto&& cryo_try_result_ = (expr);                              \
    if (!cryo_try_result_.ok()) return std::move(cryo_try_result_).error(); \
  } while (0)

// CRYO_ASSIGN(lhs, expr): lhs = the value of a Result, or return its error.
#define CRYO_ASSIGN(lhs, expr) CRYO_ASSIGN_IMPL(CRYO_CONCAT(cryo_res_, __LINE__), lhs, expr)
#define CRYO_ASSIGN_IMPL(tmp, lhs, expr)            \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).error();     \
  lhs = std::move(tmp).value()
