// Error types used across kdom: every failure is thrown as a kdom::Error whose message is one
// line that names the problem; main() prints it and exits non-zero.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace kdom {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An Error for a failed system call: the message ends with strerror(errno).
class SystemError : public Error {
 public:
  SystemError(const std::string& what, int err);
  int error_number() const { return errno_; }

 private:
  int errno_;
};

// Throws SystemError(what, errno) when result is negative; returns result otherwise.
template <typename T>
T check_syscall(T result, const std::string& what) {
  if (result < 0) throw SystemError(what, errno);
  return result;
}

}  // namespace kdom
