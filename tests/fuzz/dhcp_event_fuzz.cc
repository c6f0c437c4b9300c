// Fuzzes the daemon's read of a netvm's DHCP events (net/dhcp_event.h): the
// line comes from udhcpc's script in a netvm, whose network is hostile, so
// any bytes may arrive. What it accepts as a lease holds only usable
// unicast addresses and a prefix of /8 to /32.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/dhcp_event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto event = tessera::net::ParseDhcpEvent(line);
  if (!event || !event->lease) return 0;
  const auto& lease = *event->lease;
  if (!tessera::net::IsUsableUnicast(lease.address) || lease.prefix < 8 || lease.prefix > 32 ||
      (lease.router && !tessera::net::IsUsableUnicast(*lease.router)) ||
      lease.dns.size() > tessera::net::kMaxDhcpResolvers) {
    __builtin_trap();
  }
  for (uint32_t dns : lease.dns) {
    if (!tessera::net::IsUsableUnicast(dns)) __builtin_trap();
  }
  return 0;
}
