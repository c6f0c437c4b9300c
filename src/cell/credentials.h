#pragma once
// A qube's credentials (qube key `credentials`, services.tessera.credentials):
// host files copied, at each start, into R/cells/<q>/credentials — on the
// runtime dir's tmpfs, never on disk on a real host — and shown to the qube
// read-only at /run/credentials/<name>, owned by its root with group `user`
// (gid 1000), mode 0440 in a 0750 directory.
//
//   UniqueFd tree = TRY(StageCredentials(spec.credentials, scratch, ids));
//   plan.run_mounts.push_back({tree.get(), "run/credentials", false});
//
// A missing or unreadable file, or one that is not a regular file or larger
// than 1 MiB, fails the start, naming the credential and the path: a qube
// never starts without a secret it was declared to have.

#include <map>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "storage/storage.h"

namespace tessera::cell {

inline constexpr size_t kMaxCredentialBytes = 1u << 20;

Result<UniqueFd> StageCredentials(const std::map<std::string, std::string>& credentials,
                                  const std::string& scratch, const storage::IdRange& ids);

}  // namespace tessera::cell
