// The one error type of fortmesh. Errors that a peer, a file or an operator can
// cause are returned as values; exceptions never cross a library boundary and
// asserts never check input.
//
// An error carries a Code, so that callers decide by kind and never by the
// words of a message; the message is one line for an operator.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace fm {

enum class Code : uint8_t {
  ok = 0,
  failed,             // anything without a more precise kind
  invalid_argument,   // the request or input is malformed or out of range
  not_found,          // no such member, file, peer
  not_running,        // no daemon answers on the control socket
  permission_denied,  // the OS or the org's rules refuse it
  no_effect,          // valid, but it would change nothing (e.g. a Revoke by a junior admin)
  conflict,           // the state forbids it (already revoked, another daemon runs)
  corrupt,            // stored data is damaged
  unavailable,        // a resource is missing or busy (interface, socket, disk)
};
const char* to_string(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // success
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(Code::failed, std::move(message)); }
  static Status error(Code code, std::string message) { return Status(code, std::move(message)); }

  bool is_ok() const { return code_ == Code::ok; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  // One line, suitable for an operator: says what failed and why.
  const std::string& message() const { return message_; }
  // The same error with `context` in front ("store db/: " + message).
  Status prefixed(const std::string& context) const { return Status(code_, context + message_); }

 private:
  Status(Code code, std::string message) : code_(code == Code::ok ? Code::failed : code), message_(std::move(message)) {}
  Code code_ = Code::ok;
  std::string message_;
};

inline const char* to_string(Code code) {
  switch (code) {
    case Code::ok: return "ok";
    case Code::failed: return "failed";
    case Code::invalid_argument: return "invalid_argument";
    case Code::not_found: return "not_found";
    case Code::not_running: return "not_running";
    case Code::permission_denied: return "permission_denied";
    case Code::no_effect: return "no_effect";
    case Code::conflict: return "conflict";
    case Code::corrupt: return "corrupt";
    case Code::unavailable: return "unavailable";
  }
  return "failed";
}

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}                // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}        // NOLINT: must be an error

  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  Code code() const { return status_.code(); }
  const std::string& message() const { return status_.message(); }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace fm
