#include "daemon/auth.h"

#include <grp.h>
#include <sys/socket.h>

#include <algorithm>

namespace tessera::daemon {

Result<Peer> GetPeer(int fd) {
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Err(Error::FromErrno("getsockopt SO_PEERCRED"));
  }
  Peer peer{cred.pid, cred.uid, cred.gid, {}};
  // SO_PEERGROUPS (Linux 4.13): the supplementary groups the kernel recorded
  // at connect(); unlike /proc/<pid>/status it cannot race with pid reuse.
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      break;
    }
    if (errno == ERANGE && groups.size() < 65536) {
      groups.resize(std::max<size_t>(glen / sizeof(gid_t), groups.size() * 2));
      continue;
    }
    // Without the group list only uid 0 can be authorised (fail closed).
    groups.clear();
    break;
  }
  peer.groups = std::move(groups);
  return peer;
}

std::optional<gid_t> LookupGroupId(const std::string& name) {
  if (name.empty()) return std::nullopt;
  struct group grp;
  struct group* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getgrnam_r(name.c_str(), &grp, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    return std::nullopt;
  }
  return found->gr_gid;
}

bool IsMember(const Peer& peer, std::optional<gid_t> gid) {
  if (!gid) return false;
  if (peer.gid == *gid) return true;
  return std::find(peer.groups.begin(), peer.groups.end(), *gid) != peer.groups.end();
}

bool IsAuthorized(const Peer& peer, std::optional<gid_t> admin_gid) {
  return peer.uid == 0 || IsMember(peer, admin_gid);
}

bool MayUseHostSources(const Peer& peer, std::optional<gid_t> host_sources_gid) {
  return peer.uid == 0 || IsMember(peer, host_sources_gid);
}

}  // namespace tessera::daemon
