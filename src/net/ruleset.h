#pragma once
// The nftables ruleset of a netvm's namespace (docs/NETWORK.md "Rules"),
// rendered as one nft script that replaces the table `inet tessera` in a
// single transaction: there is never a moment without rules.
//
//   NetvmRules rules;
//   rules.uplink = "eth0";
//   rules.dns = {upstream_resolver};
//   rules.clients.push_back({"work", work_ip, "vif5", declared, runtime});
//   std::string script = RenderNetvmRuleset(rules);   // for RunNft (nft.h)
//   std::string next = RenderNetvmUpdate(&rules, changed);  // only what changed
//
// What the table does, for traffic from its clients' veths:
// - a client may send only from its own address (anti-spoofing, before
//   conntrack), and no IPv6 unless the netvm provides it;
// - DNS to the two virtual addresses is redirected to the netvm's resolvers;
// - nothing from a client reaches the netvm itself (its services), except
//   what the redirected DNS needs;
// - clients never reach each other; forwarded traffic goes through the
//   client's firewall chain (net/firewall.h), answers come back by conntrack;
// - what leaves through the uplink is masqueraded (NAT at each hop, as Qubes).
//
// Shape: four base chains (antispoof, dns, input, forward) hand a client's
// packets by input interface through a verdict map to that client's own
// chains (as-, dns-, in-, fwd-<vif>, then fw-<vif> and fw-<vif>-rt); the
// rest of the table is shared. A client is added or removed by its map
// elements and chains alone (RenderNetvmUpdate).

#include <cstdint>
#include <string>
#include <vector>

#include "net/address.h"

namespace tessera::net {

struct NetvmClient {
  std::string qube;
  uint32_t address = 0;               // its one address (host order)
  std::string ifname;                 // the netvm's end of its veth
  // CompileFirewall's statements: the declared rules (ending in their
  // verdict), and the runtime rules checked before them (without a final
  // verdict: what none of them decides goes on to the declared ones).
  std::vector<std::string> firewall;
  std::vector<std::string> runtime;
  bool operator==(const NetvmClient&) const = default;
};

struct NetvmRules {
  std::string uplink;         // where clients' traffic leaves (masqueraded)
  std::vector<uint32_t> dns;  // the netvm's resolvers: virtual DNS 1 and 2 go to these
  bool ipv6 = false;          // the netvm provides IPv6 to its clients
  std::vector<NetvmClient> clients;
  bool operator==(const NetvmRules&) const = default;
};

inline constexpr const char* kTableName = "tessera";

// The nft script: creates the table if missing, deletes it, defines it anew
// (one transaction when given to nft as one buffer).
std::string RenderNetvmRuleset(const NetvmRules& rules);
// The script that turns the table `before` (as applied) into `after`, as one
// transaction: clients added and removed touch only their own chains and
// map elements, a changed firewall only refills its chain, so the cost
// follows the change and not the size of the table. When what every
// client shares changed (uplink, resolvers, IPv6), or with no `before`, it
// is RenderNetvmRuleset(after). "" when nothing changed.
std::string RenderNetvmUpdate(const NetvmRules* before, const NetvmRules& after);

// A qube's own table (`inet tessera-in`, beside a netvm's `inet tessera`):
// it takes no new connections from its network, as in Qubes; answers to its
// own, loopback and ICMP pass.
std::string RenderQubeInputTable();

// The netvm's end of the veth of the client with `address` from `range`:
// "vif" + the address's offset in the range ("vif2" for 10.137.0.2 in
// 10.137.0.0/16): unique and stable with the address, within IFNAMSIZ for
// any range the address book takes.
std::string ClientIfname(uint32_t address, const Ipv4Net& range);

// The firewall chain of a client in the table (named after its interface:
// qube names may hold characters nft identifiers may not), and the chain of
// its runtime rules, which the firewall chain jumps to first.
std::string FirewallChainName(const NetvmClient& client);
std::string RuntimeChainName(const NetvmClient& client);

}  // namespace tessera::net
