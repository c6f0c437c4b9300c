#pragma once
// Id-range arithmetic exposed for unit tests; not part of the public API.

#include <cstdint>
#include <vector>

#include "common/error.h"

namespace tessera::storage::internal {

struct ReservedRange {
  uint64_t start = 0;
  uint64_t count = 0;
};

// The first range boundary (kFirstHostId + k * kIdsPerQube) at or after
// `candidate` whose kIdsPerQube ids overlap none of `reserved`; ENOSPC when the
// 32-bit id space is exhausted.
Result<uint64_t> NextFreeBase(uint64_t candidate, const std::vector<ReservedRange>& reserved);

// Ranges handed out in the host's /etc/subuid and /etc/subgid (rootless
// podman etc.): qube ranges are placed around them.
std::vector<ReservedRange> HostSubIdRanges();

}  // namespace tessera::storage::internal
