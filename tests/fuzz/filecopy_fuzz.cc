// Fuzzes what the qubes.Filecopy receiver reads from a hostile sender: the
// record header, names and symlink targets (wire/filecopy.h). Whatever the
// checks accept must be safe to create: relative, no "." or ".." component,
// no control character; a header that parses must encode back to itself.

#include <cstddef>
#include <cstdint>
#include <string>

#include "wire/filecopy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::wire;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.size() >= kFilecopyHeaderSize) {
    if (auto h = ParseFilecopyHeader(input.substr(0, kFilecopyHeaderSize))) {
      if (EncodeFilecopyHeader(*h) != input.substr(0, kFilecopyHeaderSize)) __builtin_trap();
    }
  }
  // The rest: "name\0target".
  std::string_view rest =
      input.size() > kFilecopyHeaderSize ? input.substr(kFilecopyHeaderSize) : input;
  size_t zero = rest.find('\0');
  std::string_view name = rest.substr(0, zero);
  std::string_view target =
      zero == std::string_view::npos ? std::string_view() : rest.substr(zero + 1);
  if (CheckFilecopyName(name)) {
    if (name.empty() || name[0] == '/') __builtin_trap();
    for (char c : name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) __builtin_trap();
    }
    std::string padded = "/" + std::string(name) + "/";
    if (padded.find("/../") != std::string::npos || padded.find("/./") != std::string::npos ||
        padded.find("//") != std::string::npos) {
      __builtin_trap();
    }
    if (CheckFilecopySymlink(name, target)) {
      if (target.empty() || target[0] == '/') __builtin_trap();
      // Never climbs above the root: leading ".." at most as deep as the link.
      size_t depth = 0;
      for (char c : name) depth += c == '/';
      std::string t = std::string(target) + "/";
      size_t ups = 0;
      while (t.compare(0, 3, "../") == 0) {
        ++ups;
        t.erase(0, 3);
      }
      if (ups > depth) __builtin_trap();
      std::string tail = "/" + t;
      if (tail.find("/../") != std::string::npos || tail.find("/./") != std::string::npos) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
