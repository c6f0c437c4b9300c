#pragma once
// Links, addresses and routes in network namespaces, through netlink
// (libnl-route), never by running `ip` (docs/NETWORK.md "Links"). The
// calling thread enters a namespace by setns on a pinned descriptor only
// while it makes a netlink socket there (and writes the namespace's
// sysctls), then comes back (net/netns.h); the socket stays in that
// namespace, so a batch of changes enters it once however many calls it
// makes, and a namespace cannot be swapped under us by a name.
//
//   Netlink qube = TRY(Netlink::In(qube_ns, {{"net/ipv6/conf/all/disable_ipv6", "1"}}));
//   TRY(qube.AddAddress("eth0", work_ip, 32));
//   TRY(qube.SetLinkUp("eth0"));
//   TRY(qube.AddRoute(gateway, 32, std::nullopt, "eth0"));   // on-link
//   TRY(qube.AddRoute(0, 0, gateway, "eth0"));                // default
//
// The free functions below make a socket per call.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

struct nl_sock;

namespace tessera::net {

using Sysctls = std::vector<std::pair<std::string, std::string>>;  // "net/...", value

// What tells a link apart from one made to look like it (an uplink given
// back: docs/NETWORK.md "Uplink"). A rename keeps all three.
struct LinkIdentity {
  std::string name;
  int index = 0;
  std::string kind;  // "veth", "dummy", ...; "" for a physical device
  std::string mac;   // "aa:bb:..."
  bool operator==(const LinkIdentity&) const = default;
};

class Netlink {
 public:
  // A socket in the namespace of `netns_fd` (-1: the caller's), after
  // writing `sysctls` there ("net/ipv4/ip_forward", "1").
  static Result<Netlink> In(int netns_fd, const Sysctls& sysctls = {});

  // A veth pair: `name` here, its peer `peer` in the namespace of
  // `peer_netns_fd`. Both are made down.
  Status CreateVeth(const std::string& name, int peer_netns_fd, const std::string& peer);
  // Deletes a link (a veth's peer goes with it). A missing link is not an error.
  Status DeleteLink(const std::string& name);
  Result<bool> LinkExists(const std::string& name);
  // The link named `name`, or with index `index` (nullopt: none).
  Result<std::optional<LinkIdentity>> Identify(const std::string& name);
  Result<std::optional<LinkIdentity>> Identify(int index);
  Status SetLinkUp(const std::string& name, bool up = true);
  // An IPv4 address with its prefix length (32: a point-to-point address).
  Status AddAddress(const std::string& ifname, uint32_t address, int prefix);
  // The IPv4 addresses of the link, with their prefix lengths.
  Result<std::vector<std::pair<uint32_t, int>>> ListAddresses(const std::string& ifname);
  // Removes every IPv4 address of the link (its routes go with them).
  Status FlushAddresses(const std::string& ifname);
  // A route to `dst/prefix` (0/0: the default route) through `gateway`, or
  // on the link itself without one.
  Status AddRoute(uint32_t dst, int prefix, std::optional<uint32_t> gateway,
                  const std::string& ifname);
  // Moves link `name` into the namespace of `to_netns_fd`, keeping its name
  // (a host interface becoming a netvm's uplink, and going back) or taking
  // `new_name` there. Its addresses and routes do not move with it.
  Status MoveLink(const std::string& name, int to_netns_fd, const std::string& new_name = "");

 private:
  struct Free {
    void operator()(nl_sock* sock) const;
  };
  explicit Netlink(nl_sock* sock) : sock_(sock) {}
  std::unique_ptr<nl_sock, Free> sock_;
};

Status CreateVeth(int netns_fd, const std::string& name, int peer_netns_fd,
                  const std::string& peer);
Status DeleteLink(int netns_fd, const std::string& name);
Result<bool> LinkExists(int netns_fd, const std::string& name);
Status SetLinkUp(int netns_fd, const std::string& name, bool up = true);
Status AddAddress(int netns_fd, const std::string& ifname, uint32_t address, int prefix);
Result<std::vector<std::pair<uint32_t, int>>> ListAddresses(int netns_fd,
                                                            const std::string& ifname);
Status FlushAddresses(int netns_fd, const std::string& ifname);
Status AddRoute(int netns_fd, uint32_t dst, int prefix, std::optional<uint32_t> gateway,
                const std::string& ifname);
Status MoveLink(int netns_fd, const std::string& name, int to_netns_fd);
// Writes a sysctl of the namespace ("net/ipv4/ip_forward", "1").
Status SetNetSysctl(int netns_fd, const std::string& key, const std::string& value);

}  // namespace tessera::net
