#pragma once
// The uplinks of netvms (docs/NETWORK.md "Uplink"): how a provides_network
// qube without a netvm reaches the world, in one of three ways its config
// names:
// - `uplink = "IFNAME"` with `uplink_address`: that host interface is moved
//   into the netvm's namespace for its life and addressed statically;
// - the same without `uplink_address`: DHCP. busybox `udhcpc` runs in the
//   netvm (hostile packets are parsed there, never here) with
//   `tessera-dhcp-hook` as its script, whose JSON lines on udhcpc's stdout
//   (net/dhcp_event.h) tell this class what to set: address, default route,
//   and the resolvers the netvm's clients' DNS goes to;
// - `uplink = "host-nat"`: a veth to the host, which forwards and NATs
//   (net/host_nat.h); the weaker mode, since the host is then on a network.
//
// The Network (network.h) asks for an uplink when a netvm runs and gives it
// back when the netvm stops; what a killed daemon left is adopted.
//
//   Uplinks uplinks(loop, audit, state_dir + "/net", on_resolvers_changed, report);
//   uplinks.SetRunner(&runs);                      // DHCP clients start from now on
//   TRY(uplinks.Take("sys-net", netns_fd, cfg, qubes_range));
//   std::vector<uint32_t> dns = uplinks.Resolvers("sys-net", cfg);
//   uplinks.Return("sys-net");

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "config/model.h"
#include "daemon/audit.h"
#include "daemon/event_loop.h"
#include "net/address.h"
#include "net/dhcp_event.h"
#include "net/links.h"

namespace tessera::daemon {

class RunCommands;

class Uplinks {
 public:
  // The netvm's resolvers changed (a lease): its table must follow.
  using Changed = std::function<void(const std::string& netvm)>;
  using Reporter = std::function<void(const std::string& qube, const std::string& action,
                                      const std::string& error)>;

  Uplinks(EventLoop& loop, AuditLog& audit, std::string net_dir, Changed changed, Reporter report);
  ~Uplinks();

  // DHCP clients are started through `runs` (null: none from now on); those
  // wanted before it was set start now.
  void SetRunner(RunCommands* runs);

  // The running `netvm` (namespace `netns_fd`) takes the uplink `cfg` names.
  // One it holds already (a daemon restarted) is kept; a half-done one is
  // done again. A DHCP lease inside `qubes_range` is refused.
  Status Take(const std::string& netvm, int netns_fd, const config::Qube& cfg,
              const net::Ipv4Net& qubes_range);
  // Gives the uplink back: a host interface goes home, a host-nat link is
  // deleted (and the host's NAT with the last one).
  void Return(const std::string& netvm);
  bool Holds(const std::string& netvm) const { return held_.count(netvm) != 0; }

  // The interface inside the netvm its clients' traffic leaves by.
  static std::string Interface(const config::Qube& cfg);
  // Where the netvm's clients' DNS goes: `uplink_dns` when given, else what
  // DHCP gave, else (host-nat) the host's own non-loopback resolvers.
  std::vector<uint32_t> Resolvers(const std::string& netvm, const config::Qube& cfg) const;
  // The lease a DHCP uplink holds now, if any.
  std::optional<net::DhcpLease> Lease(const std::string& netvm) const;

  // After recovery: the host's NAT table and forwarding, when no host-nat
  // link is held any more, are put back as they were.
  void Settle();

 private:
  enum class Kind { kStatic, kDhcp, kHostNat };
  struct DhcpClient;
  class DhcpCaller;
  struct Held {
    Kind kind = Kind::kStatic;
    std::string ifname;       // inside the netvm
    std::string host_ifname;  // host-nat: the host's end
    UniqueFd netns;           // the netvm's (a copy)
    net::Ipv4Net qubes_range;
    std::optional<net::DhcpLease> lease;
    std::vector<uint32_t> host_dns;  // host-nat: the host's resolvers
    std::shared_ptr<DhcpClient> client;
    EventLoop::Timer retry;
    net::LinkIdentity identity;  // a host interface: the device it was given
  };
  // Which device each netvm was given, in which namespace (its inode): kept
  // in S/net/uplinks.json across daemon restarts, so that only that device
  // goes back to the host, whatever the netvm named another.
  struct Given {
    net::LinkIdentity identity;
    uint64_t netns = 0;
  };

  Status TakeInterface(const std::string& netvm, int netns_fd, const config::Qube& cfg, Held& held);
  void SaveGiven();
  Status TakeHostNat(const std::string& netvm, int netns_fd, Held& held);
  void StartDhcp(const std::string& netvm);
  void OnDhcpLine(const std::string& netvm, const std::string& line);
  void OnDhcpEnded(const std::string& netvm, const DhcpClient* client, const std::string& why);
  Status ApplyLease(Held& held, const net::DhcpLease& lease);
  Status EnableHostNat();
  void DisableHostNatIfUnused();

  EventLoop& loop_;
  AuditLog& audit_;
  std::string net_dir_;
  Changed changed_;
  Reporter report_;
  RunCommands* runs_ = nullptr;
  UniqueFd host_netns_;  // the daemon's own namespace: where uplinks come from
  std::optional<net::AddressBook> host_nat_book_;
  std::map<std::string, Held> held_;
  std::map<std::string, Given> given_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for runs that outlive us
};

}  // namespace tessera::daemon
