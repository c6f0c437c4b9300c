#pragma once
// Who is calling: the admin socket's peer as the kernel reports it
// (SO_PEERCRED, SO_PEERGROUPS), and whether that peer may administer qubes.
// Nothing the client sends is used to decide; when in doubt, deny.
//
//   Peer peer = TRY(GetPeer(client_fd));
//   if (!IsAuthorized(peer, admin_gid)) { audit; refuse; }

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace tessera::daemon {

struct Peer {
  pid_t pid = -1;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups at connect() time
};

// Credentials of a connected AF_UNIX peer, taken at connect() by the kernel.
Result<Peer> GetPeer(int fd);

// The gid of group `name`, or nullopt when there is no such group.
std::optional<gid_t> LookupGroupId(const std::string& name);

// uid 0, or a member (primary or supplementary) of the admin group.
bool IsAuthorized(const Peer& peer, std::optional<gid_t> admin_gid);

}  // namespace tessera::daemon
