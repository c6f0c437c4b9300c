#pragma once
// `uplink = "host-nat"` (docs/NETWORK.md "Uplink"), the documented weaker
// uplink: a veth from the host (`tsnatN`, address kHostNatGateway) to the
// netvm (`eth0`, its own 10.139.2.N/32), and the host forwards and NATs the
// netvm's traffic. The host's table drops everything the netvm starts
// towards the host itself or towards another host-nat netvm.
//
//   TRY(RunNft(host_ns, RenderHostNatTable()));       // while any host-nat link exists
//   TRY(RunNft(host_ns, RemoveHostNatTable()));       // when the last one goes
//   std::vector<uint32_t> dns = NameserversOf(ReadFile("/etc/resolv.conf"));

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/address.h"

namespace tessera::net {

// 10.139.2.0/24: the host's end is .1, each host-nat netvm gets one of the rest.
inline constexpr uint32_t kHostNatGateway = (10u << 24) | (139u << 16) | (2u << 8) | 1u;
inline constexpr Ipv4Net kHostNatRange{(10u << 24) | (139u << 16) | (2u << 8), 24};
// The name inside the netvm.
inline constexpr const char* kHostNatNetvmIfname = "eth0";

// The host's end of the link to the netvm whose address is `netvm_address`.
std::string HostNatIfname(uint32_t netvm_address);

// The host's table (replaces itself whole), and its removal (no error if absent).
std::string RenderHostNatTable();
std::string RemoveHostNatTable();

// The IPv4 `nameserver`s of a resolv.conf, loopback ones left out (they are
// the host's own and unreachable from a netvm).
std::vector<uint32_t> NameserversOf(std::string_view resolv_conf);

}  // namespace tessera::net
