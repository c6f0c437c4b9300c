#pragma once
// Links, addresses and routes in network namespaces, through netlink
// (libnl-route), never by running `ip` (docs/NETWORK.md "Links"). Each call
// works on a thread of its own that has entered the namespace given by a
// pinned descriptor (setns affects only that thread), so the daemon's own
// namespace is never touched and a namespace cannot be swapped under us by
// a name.
//
//   TRY(CreateVeth(netvm_ns, "vif2", qube_ns, "eth0"));
//   TRY(AddAddress(qube_ns, "eth0", work_ip, 32));
//   TRY(SetLinkUp(qube_ns, "eth0"));
//   TRY(AddRoute(qube_ns, gateway, 32, std::nullopt, "eth0"));   // on-link
//   TRY(AddRoute(qube_ns, 0, 0, gateway, "eth0"));                // default

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace tessera::net {

// A veth pair: `name` in the namespace of `netns_fd`, its peer `peer` in the
// namespace of `peer_netns_fd`. Both are made down.
Status CreateVeth(int netns_fd, const std::string& name, int peer_netns_fd,
                  const std::string& peer);
// Deletes a link (a veth's peer goes with it). A missing link is not an error.
Status DeleteLink(int netns_fd, const std::string& name);
// Whether a link of that name exists there.
Result<bool> LinkExists(int netns_fd, const std::string& name);
Status SetLinkUp(int netns_fd, const std::string& name, bool up = true);
// An IPv4 address with its prefix length (32: a point-to-point address).
Status AddAddress(int netns_fd, const std::string& ifname, uint32_t address, int prefix);
// The IPv4 addresses of the link, with their prefix lengths.
Result<std::vector<std::pair<uint32_t, int>>> ListAddresses(int netns_fd,
                                                            const std::string& ifname);
// Removes every IPv4 address of the link (its routes go with them).
Status FlushAddresses(int netns_fd, const std::string& ifname);
// A route to `dst/prefix` (0/0: the default route) through `gateway`, or on
// the link itself without one.
Status AddRoute(int netns_fd, uint32_t dst, int prefix, std::optional<uint32_t> gateway,
                const std::string& ifname);
// Moves link `name` from the namespace of `netns_fd` into that of
// `to_netns_fd`, keeping its name (a host interface becoming a netvm's
// uplink, and going back). Its addresses and routes do not move with it.
Status MoveLink(int netns_fd, const std::string& name, int to_netns_fd);
// Writes a sysctl of the namespace ("net/ipv4/ip_forward", "1").
Status SetNetSysctl(int netns_fd, const std::string& key, const std::string& value);

}  // namespace tessera::net
