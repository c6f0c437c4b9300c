#include "net/links.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "net/netns.h"

namespace tessera::net {

namespace {

Error NlError(const std::string& what, int err) { return Error(what + ": " + nl_geterror(err)); }

Status WriteSysctl(const std::string& key, const std::string& value) {
  if (key.rfind("net/", 0) != 0 || key.find("..") != std::string::npos) {
    return Err("bad sysctl name " + key);
  }
  // /proc/sys/net is the opening thread's namespace's.
  std::string path = "/proc/sys/" + key;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Err(Error::FromErrno("open " + path));
  ssize_t n = ::write(fd, value.data(), value.size());
  int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    errno = saved;
    return Err(Error::FromErrno("write " + path));
  }
  return {};
}

// The index of `name` in the socket's namespace, 0 if none.
int IndexOf(nl_sock* sock, const std::string& name) {
  rtnl_link* link = nullptr;
  if (rtnl_link_get_kernel(sock, 0, name.c_str(), &link) < 0 || link == nullptr) return 0;
  int index = rtnl_link_get_ifindex(link);
  rtnl_link_put(link);
  return index;
}

Result<int> NeedIndex(nl_sock* sock, const std::string& name) {
  int index = IndexOf(sock, name);
  if (index == 0) return Err("no link " + name);
  return index;
}

nl_addr* Ipv4Addr(uint32_t address, int prefix) {
  uint32_t be = htonl(address);
  nl_addr* a = nl_addr_build(AF_INET, &be, sizeof(be));
  if (a != nullptr) nl_addr_set_prefixlen(a, prefix);
  return a;
}

// One change (set by `edit`) to the link with `index`.
Status ChangeLink(nl_sock* sock, int index, const std::string& what,
                  const std::function<void(rtnl_link*)>& edit) {
  rtnl_link* old = rtnl_link_alloc();
  rtnl_link* change = rtnl_link_alloc();
  rtnl_link_set_ifindex(old, index);
  edit(change);
  int err = rtnl_link_change(sock, old, change, 0);
  rtnl_link_put(old);
  rtnl_link_put(change);
  if (err < 0) return Err(NlError(what, err));
  return {};
}

Status CheckName(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return Err("\"" + name + "\" is not a valid interface name");
  }
  return {};
}

// The namespace's IPv4 addresses on link `index`.
template <typename Fn>
Status EachAddress(nl_sock* sock, int index, Fn fn) {
  nl_cache* cache = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock, &cache); err < 0) {
    return Err(NlError("list addresses", err));
  }
  Status result = {};
  for (nl_object* obj = nl_cache_get_first(cache); obj != nullptr && result;
       obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(addr) == index && rtnl_addr_get_family(addr) == AF_INET) {
      result = fn(addr);
    }
  }
  nl_cache_free(cache);
  return result;
}

}  // namespace

void Netlink::Free::operator()(nl_sock* sock) const { nl_socket_free(sock); }

Result<Netlink> Netlink::In(int netns_fd, const Sysctls& sysctls) {
  // The socket is made in the namespace and keeps it; the thread comes back.
  NetnsVisit in = TRY(NetnsVisit::Enter(netns_fd));
  for (const auto& [key, value] : sysctls) TRY(WriteSysctl(key, value));
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return Err("netlink: out of memory");
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return Err(NlError("netlink connect", err));
  }
  return Netlink(sock);
}

Status Netlink::CreateVeth(const std::string& name, int peer_netns_fd, const std::string& peer) {
  TRY(CheckName(name));
  TRY(CheckName(peer));
  rtnl_link* link = rtnl_link_veth_alloc();
  if (link == nullptr) return Err("netlink: out of memory");
  rtnl_link_set_name(link, name.c_str());
  rtnl_link* other = rtnl_link_veth_get_peer(link);
  rtnl_link_set_name(other, peer.c_str());
  if (peer_netns_fd >= 0) rtnl_link_set_ns_fd(other, peer_netns_fd);
  int err = rtnl_link_add(sock_.get(), link, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_put(other);
  rtnl_link_veth_release(link);
  if (err < 0) return Err(NlError("create veth " + name + " (peer " + peer + ")", err));
  return {};
}

Status Netlink::DeleteLink(const std::string& name) {
  TRY(CheckName(name));
  int index = IndexOf(sock_.get(), name);
  if (index == 0) return {};
  rtnl_link* link = rtnl_link_alloc();
  rtnl_link_set_ifindex(link, index);
  int err = rtnl_link_delete(sock_.get(), link);
  rtnl_link_put(link);
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND) {
    return Err(NlError("delete link " + name, err));
  }
  return {};
}

Result<bool> Netlink::LinkExists(const std::string& name) {
  TRY(CheckName(name));
  return IndexOf(sock_.get(), name) != 0;
}

namespace {
Result<std::optional<LinkIdentity>> IdentityOf(nl_sock* sock, int index, const std::string& name) {
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(sock, index, index == 0 ? name.c_str() : nullptr, &link);
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::optional<LinkIdentity>();
  if (err < 0 || link == nullptr) return Err(NlError("look up a link", err));
  LinkIdentity id;
  id.index = rtnl_link_get_ifindex(link);
  if (const char* n = rtnl_link_get_name(link)) id.name = n;
  if (const char* type = rtnl_link_get_type(link)) id.kind = type;
  if (nl_addr* addr = rtnl_link_get_addr(link)) {
    char buf[64];
    id.mac = nl_addr2str(addr, buf, sizeof(buf));
  }
  rtnl_link_put(link);
  return std::optional<LinkIdentity>(std::move(id));
}
}  // namespace

Result<std::optional<LinkIdentity>> Netlink::Identify(const std::string& name) {
  TRY(CheckName(name));
  return IdentityOf(sock_.get(), 0, name);
}

Result<std::optional<LinkIdentity>> Netlink::Identify(int index) {
  if (index <= 0) return Err("bad interface index " + std::to_string(index));
  return IdentityOf(sock_.get(), index, "");
}

Status Netlink::SetLinkUp(const std::string& name, bool up) {
  TRY(CheckName(name));
  int index = TRY(NeedIndex(sock_.get(), name));
  return ChangeLink(sock_.get(), index, std::string(up ? "bring up " : "bring down ") + name,
                    [up](rtnl_link* change) {
                      if (up) {
                        rtnl_link_set_flags(change, IFF_UP);
                      } else {
                        rtnl_link_unset_flags(change, IFF_UP);
                      }
                    });
}

Status Netlink::AddAddress(const std::string& ifname, uint32_t address, int prefix) {
  TRY(CheckName(ifname));
  int index = TRY(NeedIndex(sock_.get(), ifname));
  rtnl_addr* addr = rtnl_addr_alloc();
  nl_addr* local = Ipv4Addr(address, prefix);
  rtnl_addr_set_ifindex(addr, index);
  rtnl_addr_set_local(addr, local);
  int err = rtnl_addr_add(sock_.get(), addr, NLM_F_CREATE | NLM_F_REPLACE);
  nl_addr_put(local);
  rtnl_addr_put(addr);
  if (err < 0) return Err(NlError("add address to " + ifname, err));
  return {};
}

Result<std::vector<std::pair<uint32_t, int>>> Netlink::ListAddresses(const std::string& ifname) {
  TRY(CheckName(ifname));
  int index = TRY(NeedIndex(sock_.get(), ifname));
  std::vector<std::pair<uint32_t, int>> out;
  TRY(EachAddress(sock_.get(), index, [&](rtnl_addr* addr) -> Status {
    nl_addr* local = rtnl_addr_get_local(addr);
    if (local == nullptr || nl_addr_get_len(local) != 4) return {};
    uint32_t be;
    std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
    out.emplace_back(ntohl(be), rtnl_addr_get_prefixlen(addr));
    return {};
  }));
  return out;
}

Status Netlink::FlushAddresses(const std::string& ifname) {
  TRY(CheckName(ifname));
  int index = TRY(NeedIndex(sock_.get(), ifname));
  return EachAddress(sock_.get(), index, [&](rtnl_addr* addr) -> Status {
    if (int err = rtnl_addr_delete(sock_.get(), addr, 0); err < 0 && err != -NLE_NOADDR) {
      return Err(NlError("remove an address of " + ifname, err));
    }
    return {};
  });
}

Status Netlink::AddRoute(uint32_t dst, int prefix, std::optional<uint32_t> gateway,
                         const std::string& ifname) {
  TRY(CheckName(ifname));
  int index = TRY(NeedIndex(sock_.get(), ifname));
  rtnl_route* route = rtnl_route_alloc();
  nl_addr* to = Ipv4Addr(dst, prefix);
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_dst(route, to);
  rtnl_route_set_scope(route, gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(hop, index);
  nl_addr* via = nullptr;
  if (gateway) {
    via = Ipv4Addr(*gateway, 32);
    rtnl_route_nh_set_gateway(hop, via);
  }
  rtnl_route_add_nexthop(route, hop);  // the route owns it now
  int err = rtnl_route_add(sock_.get(), route, NLM_F_CREATE | NLM_F_REPLACE);
  if (via != nullptr) nl_addr_put(via);
  nl_addr_put(to);
  rtnl_route_put(route);
  if (err < 0) return Err(NlError("add route via " + ifname, err));
  return {};
}

Status Netlink::MoveLink(const std::string& name, int to_netns_fd, const std::string& new_name) {
  TRY(CheckName(name));
  if (!new_name.empty()) TRY(CheckName(new_name));
  int index = TRY(NeedIndex(sock_.get(), name));
  return ChangeLink(sock_.get(), index, "move link " + name + " to another namespace",
                    [&](rtnl_link* change) {
                      rtnl_link_set_ns_fd(change, to_netns_fd);
                      if (!new_name.empty()) rtnl_link_set_name(change, new_name.c_str());
                    });
}

// ---------------------------------------------------------------------------
// One call each

Status CreateVeth(int netns_fd, const std::string& name, int peer_netns_fd,
                  const std::string& peer) {
  return TRY(Netlink::In(netns_fd)).CreateVeth(name, peer_netns_fd, peer);
}
Status DeleteLink(int netns_fd, const std::string& name) {
  return TRY(Netlink::In(netns_fd)).DeleteLink(name);
}
Result<bool> LinkExists(int netns_fd, const std::string& name) {
  return TRY(Netlink::In(netns_fd)).LinkExists(name);
}
Status SetLinkUp(int netns_fd, const std::string& name, bool up) {
  return TRY(Netlink::In(netns_fd)).SetLinkUp(name, up);
}
Status AddAddress(int netns_fd, const std::string& ifname, uint32_t address, int prefix) {
  return TRY(Netlink::In(netns_fd)).AddAddress(ifname, address, prefix);
}
Result<std::vector<std::pair<uint32_t, int>>> ListAddresses(int netns_fd,
                                                            const std::string& ifname) {
  return TRY(Netlink::In(netns_fd)).ListAddresses(ifname);
}
Status FlushAddresses(int netns_fd, const std::string& ifname) {
  return TRY(Netlink::In(netns_fd)).FlushAddresses(ifname);
}
Status AddRoute(int netns_fd, uint32_t dst, int prefix, std::optional<uint32_t> gateway,
                const std::string& ifname) {
  return TRY(Netlink::In(netns_fd)).AddRoute(dst, prefix, gateway, ifname);
}
Status MoveLink(int netns_fd, const std::string& name, int to_netns_fd) {
  return TRY(Netlink::In(netns_fd)).MoveLink(name, to_netns_fd);
}
Status SetNetSysctl(int netns_fd, const std::string& key, const std::string& value) {
  TRY(Netlink::In(netns_fd, {{key, value}}));
  return {};
}

}  // namespace tessera::net
