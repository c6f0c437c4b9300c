#pragma once
// Resolving the host names of firewall rules (docs/NETWORK.md "Firewall"):
// an A query sent from inside a netvm's namespace to its resolvers, so a
// name is resolved as the qubes behind that netvm would see it, never by
// the host's own resolver.
//
//   std::vector<uint32_t> a = TRY(ResolveIpv4(netvm_ns, "example.com", {resolver},
//                                             std::chrono::milliseconds(1000)));

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace tessera::net {

// Only common/ is used here, so a static qube tool can compile this file in.
//
// The IPv4 addresses of `name` (host order, as answered), asking each server
// in turn on UDP port 53 until one answers; each waits at most `timeout`.
// NXDOMAIN or an answer without addresses is an error (ENOENT), as is no
// answer at all (ETIMEDOUT). `netns_fd` -1: from the caller's own namespace.
Result<std::vector<uint32_t>> ResolveIpv4(int netns_fd, const std::string& name,
                                          const std::vector<uint32_t>& servers,
                                          std::chrono::milliseconds timeout);

// The query packet and the parse of an answer (exposed for tests and fuzzing).
std::string BuildQuery(uint16_t id, const std::string& name);
Result<std::vector<uint32_t>> ParseAnswer(uint16_t id, const std::string& packet);

}  // namespace tessera::net
