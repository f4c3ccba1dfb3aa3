// Error message formatting for system call failures.
#include "base/error.h"

#include <cstring>

namespace kdom {

SystemError::SystemError(const std::string& what, int err)
    : Error(what + ": " + std::strerror(err)), errno_(err) {}

}  // namespace kdom
