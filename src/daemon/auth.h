#pragma once
// Who is calling: the admin socket's peer as the kernel reports it
// (SO_PEERCRED, SO_PEERGROUPS), whether that peer may administer qubes, and
// whether it may make the daemon read host paths it names. Nothing the client
// sends is used to decide; when in doubt, deny. Groups are looked up when a
// peer connects or asks (LookupGroupId), never cached: a group created after
// the daemon started counts.
//
// The admin group is root-equivalent (as dom0 is in Qubes): its members
// start what they like with the host's resources. Host-path template
// sources are refused to them anyway, so that reading a root-only host file
// is not one `apply` away for every member.
//
//   Peer peer = TRY(GetPeer(client_fd));
//   if (!IsAuthorized(peer, LookupGroupId(admin_group))) { audit; refuse; }
//   if (!MayUseHostSources(peer, LookupGroupId(host_sources_group))) { refuse; }

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

// A member, primary or supplementary, of group `gid` (nullopt: no group).
bool IsMember(const Peer& peer, std::optional<gid_t> gid);

// uid 0, or a member of the admin group.
bool IsAuthorized(const Peer& peer, std::optional<gid_t> admin_gid);

// May make the daemon read a host path it names (a `dir:` or `host` template
// source): uid 0, or a member of the group given with --allow-host-sources.
// Admin-group membership alone is not enough.
bool MayUseHostSources(const Peer& peer, std::optional<gid_t> host_sources_gid);

}  // namespace tessera::daemon
