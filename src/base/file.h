// Reading whole files, with errors that name the file and what it was for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kdom {

// Throws Error("cannot read <what> '<path>': <reason>") on failure; an empty file is an
// error too ("<what> '<path>' is empty").
std::vector<uint8_t> read_file(const std::string& path, const std::string& what);

}  // namespace kdom
