#pragma once
// Id-range arithmetic exposed for unit tests; not part of the public API.

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage::internal {

struct ReservedRange {
  uint64_t start = 0;
  uint64_t count = 0;
};

// The first range boundary (kFirstHostId + k * kIdsPerQube) at or after
// `candidate` whose kIdsPerQube ids overlap none of `reserved`; ENOSPC when the
// 32-bit id space is exhausted.
Result<uint64_t> NextFreeBase(uint64_t candidate, const std::vector<ReservedRange>& reserved);

// AllocateIdRange / ReleaseIdRange against the host registry in
// `registry_dir` (production: kHostIdRegistryDir; tests: a directory of
// their own, so they can check exact bases and staleness in isolation).
Result<IdRange> AllocateIdRangeIn(const Layout& layout, const std::string& qube,
                                  const std::string& registry_dir);
Status ReleaseIdRangeIn(const Layout& layout, const std::string& qube,
                        const std::string& registry_dir);
// Drops the registry's stale entries (state directory gone, or its
// idmap.json no longer lists the range); nothing if there is no registry.
// Allocation does this itself; tests call it after deleting their state dirs.
Status PruneIdRegistry(const std::string& registry_dir);

// Ranges handed out in the host's /etc/subuid and /etc/subgid (rootless
// podman etc.): qube ranges are placed around them.
std::vector<ReservedRange> HostSubIdRanges();

}  // namespace tessera::storage::internal
