// Error values for code where failure is expected (kernel calls, parsing, I/O).
// Each layer adds its context on the way up: "create sandbox web-1: veth: File exists".
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

namespace ferry {

struct Error {
  // errno-style code where one exists (EINVAL, ENOENT, ...), else 0.
  int code = 0;
  std::string message;

  static Error fromErrno(std::string context, int err = errno) {
    return Error{err, std::move(context) + ": " + std::strerror(err)};
  }
  static Error invalid(std::string message) { return Error{EINVAL, std::move(message)}; }

  // Returns a copy with `context` in front: "context: message".
  Error wrap(const std::string& context) const& { return Error{code, context + ": " + message}; }
  Error wrap(const std::string& context) && {
    message = context + ": " + message;
    return std::move(*this);
  }
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Error e) { return std::unexpected<Error>(std::move(e)); }
inline std::unexpected<Error> fail(int code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}
inline std::unexpected<Error> failErrno(std::string context, int err = errno) {
  return std::unexpected<Error>(Error::fromErrno(std::move(context), err));
}

}  // namespace ferry
