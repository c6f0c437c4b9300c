#pragma once
// What the DHCP client in a netvm reports (docs/NETWORK.md "Uplink"): an
// uplink without `uplink_address` is configured by busybox `udhcpc`, run in
// the netvm (its network is hostile: DHCP is parsed there, never in the
// daemon), whose event script, `tessera-dhcp-hook`, prints one JSON line per
// event on udhcpc's stdout. The daemon reads that line here, as untrusted
// input, and sets the address, route and resolvers itself.
//
//   {"event":"bound","ip":"192.0.2.9","subnet":"255.255.255.0",
//    "router":"192.0.2.1 192.0.2.2","dns":"192.0.2.53"}
//
//   DhcpEvent e = TRY(ParseDhcpEvent(line));
//   if (e.lease) { ...e.lease->address, prefix, router, dns... } else { deconfigure }

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera::net {

inline constexpr size_t kMaxDhcpEventLine = 4096;
inline constexpr size_t kMaxDhcpResolvers = 3;

struct DhcpLease {
  uint32_t address = 0;  // host order
  int prefix = 24;
  std::optional<uint32_t> router;  // the first one given
  std::vector<uint32_t> dns;       // at most kMaxDhcpResolvers, in order
  bool operator==(const DhcpLease&) const = default;
};

struct DhcpEvent {
  std::string event;               // udhcpc's: bound, renew, deconfig, leasefail, nak
  std::optional<DhcpLease> lease;  // bound and renew only
};

// One line of the hook's output. A lease's address, router and resolvers
// must be unicast addresses a host could have (never 0/8, loopback,
// link-local, multicast, broadcast or Qubes' 10.139/16), its mask
// contiguous (/8 to /32). Anything else is an error naming the field.
Result<DhcpEvent> ParseDhcpEvent(std::string_view line);

// Whether `address` is an ordinary unicast address (the rule above).
bool IsUsableUnicast(uint32_t address);

}  // namespace tessera::net
