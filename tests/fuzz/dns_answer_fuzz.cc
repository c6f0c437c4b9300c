// Fuzzes the firewall resolver's parse of a DNS answer (net/resolve.h): an
// answer comes from the network, so any bytes may arrive. It must never read
// out of bounds; what it accepts is a non-empty list of addresses.

#include <cstddef>
#include <cstdint>
#include <string>

#include "net/resolve.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string packet(reinterpret_cast<const char*>(data), size);
  uint16_t id = size >= 2 ? static_cast<uint16_t>((data[0] << 8) | data[1]) : 0;
  auto parsed = tessera::net::ParseAnswer(id, packet);
  if (parsed && parsed->empty()) __builtin_trap();
  return 0;
}
