#pragma once
// A qube's Qubes firewall rules compiled to nftables (docs/NETWORK.md
// "Firewall"): the statements of the chain its netvm jumps to for traffic
// from that qube. Qubes' semantics: ordered, the first match decides; a
// declared list that is not empty ends in an implicit drop, an empty one
// accepts everything. Expired rules (`expire` at or before `now`) are left
// out, but the implicit drop stays: a list whose rules all expired accepts
// nothing (a temporary exception ends, it never opens everything).
// Hostnames must come resolved: a rule naming one that is not in `hosts`
// (or resolved to nothing) makes the whole compile fail, and the caller
// applies a chain that drops everything (fail closed).
//
//   FirewallInput in{rules, hosts, time(nullptr)};
//   std::vector<std::string> body = TRY(CompileFirewall(in));
//   // "ip daddr 192.168.0.0/16 meta l4proto tcp th dport 443 accept", ..., "drop"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/model.h"

namespace tessera::net {

struct FirewallInput {
  std::vector<config::FirewallRule> rules;
  // dsthost names as resolved when the rules were applied: IPv4 and IPv6
  // addresses as text.
  std::map<std::string, std::vector<std::string>> hosts;
  int64_t now = 0;  // seconds since the epoch
};

// The chain's statements, one per line, in order (the last is the final
// verdict: "drop", or "accept" for an empty list).
Result<std::vector<std::string>> CompileFirewall(const FirewallInput& input);

// The earliest `expire` after `now`: when the rules must be compiled again.
std::optional<int64_t> NextExpiry(const std::vector<config::FirewallRule>& rules, int64_t now);

// The names among the rules' dsthosts (what must be resolved).
std::vector<std::string> HostnamesOf(const std::vector<config::FirewallRule>& rules);

// A rule in qvm-firewall's words ("action=accept dsthost=example.com
// proto=tcp dstports=443-443"), for listings and errors.
std::string DescribeRule(const config::FirewallRule& rule);

}  // namespace tessera::net
