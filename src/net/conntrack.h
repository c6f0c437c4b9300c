#pragma once
// Connection-tracking entries of one address in a network namespace
// (docs/NETWORK.md "Links"), through ctnetlink (libnetfilter_conntrack),
// never by running `conntrack`. When a client is unlinked its entries in
// the netvm are forgotten: its address may be given to another qube (a
// disposable's is freed when it stops), and an entry left behind would pass
// the old connections' answers to the new one ("ct direction reply accept").
//
//   size_t gone = TRY(ForgetConnections(netvm_ns, client_address));

#include <cstddef>
#include <cstdint>

#include "common/error.h"

namespace tessera::net {

// IPv4 entries whose original source or destination is `address` (host
// order), in the namespace of `netns_fd` (-1: the caller's).
Result<size_t> CountConnections(int netns_fd, uint32_t address);
// Deletes them; how many went. An entry that ended meanwhile is not an error.
Result<size_t> ForgetConnections(int netns_fd, uint32_t address);

}  // namespace tessera::net
