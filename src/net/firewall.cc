#include "net/firewall.h"

#include <algorithm>

#include "net/address.h"

namespace tessera::net {

namespace {

enum class Family { kAny, kV4, kV6 };

bool IsCidr(const std::string& host) {
  return host.find('/') != std::string::npos;  // the loader normalises addresses to CIDRs
}

Family FamilyOf(const std::string& address) {
  return address.find(':') != std::string::npos ? Family::kV6 : Family::kV4;
}

// nft's comment: printable ASCII without quotes, at most 128 bytes.
std::string NftComment(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(c);
    if (out.size() == 128) break;
  }
  return out;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

// One statement for one address family (kAny: no address match).
std::string Statement(const config::FirewallRule& rule, Family family,
                      const std::vector<std::string>& addresses) {
  std::vector<std::string> parts;
  if (!addresses.empty()) {
    std::string set = addresses.size() == 1 ? addresses[0] : "{ " + Join(addresses) + " }";
    parts.push_back(std::string(family == Family::kV6 ? "ip6" : "ip") + " daddr " + set);
  }
  if (rule.specialtarget_dns) {
    // As the client sent it: its netvm redirects DNS to its resolvers before
    // the forward hook sees it.
    parts.push_back("ct original ip daddr { " + FormatIpv4(kVirtualDns1) + ", " +
                    FormatIpv4(kVirtualDns2) + " }");
    if (rule.proto == config::FirewallProto::kAny) {
      parts.push_back("meta l4proto { tcp, udp } th dport 53");
    }
  }
  switch (rule.proto) {
    case config::FirewallProto::kAny:
      break;
    case config::FirewallProto::kTcp:
      parts.push_back("meta l4proto tcp");
      break;
    case config::FirewallProto::kUdp:
      parts.push_back("meta l4proto udp");
      break;
    case config::FirewallProto::kIcmp:
      parts.push_back(family == Family::kV6 ? "meta l4proto ipv6-icmp" : "meta l4proto icmp");
      if (rule.icmptype) {
        parts.push_back(std::string(family == Family::kV6 ? "icmpv6" : "icmp") + " type " +
                        std::to_string(*rule.icmptype));
      }
      break;
  }
  if (rule.dstports) {
    std::string ports = std::to_string(rule.dstports->first);
    if (rule.dstports->last != rule.dstports->first) {
      ports += "-" + std::to_string(rule.dstports->last);
    }
    parts.push_back("th dport " + ports);
  } else if (rule.specialtarget_dns && rule.proto != config::FirewallProto::kAny &&
             rule.proto != config::FirewallProto::kIcmp) {
    parts.push_back("th dport 53");
  }
  parts.push_back(rule.action == config::FirewallAction::kAccept ? "accept" : "drop");
  if (!rule.comment.empty()) {
    if (std::string c = NftComment(rule.comment); !c.empty())
      parts.push_back("comment \"" + c + "\"");
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

}  // namespace

std::vector<std::string> HostnamesOf(const std::vector<config::FirewallRule>& rules) {
  std::vector<std::string> names;
  for (const auto& r : rules) {
    if (!r.dsthost.empty() && !IsCidr(r.dsthost) &&
        std::find(names.begin(), names.end(), r.dsthost) == names.end()) {
      names.push_back(r.dsthost);
    }
  }
  return names;
}

std::optional<int64_t> NextExpiry(const std::vector<config::FirewallRule>& rules, int64_t now) {
  std::optional<int64_t> next;
  for (const auto& r : rules) {
    if (r.expire && *r.expire > now && (!next || *r.expire < *next)) next = *r.expire;
  }
  return next;
}

Result<std::vector<std::string>> CompileFirewall(const FirewallInput& input) {
  std::vector<std::string> body;
  for (size_t i = 0; i < input.rules.size(); ++i) {
    const config::FirewallRule& rule = input.rules[i];
    if (rule.expire && *rule.expire <= input.now) continue;
    if (rule.dsthost.empty()) {
      // No address: ICMP needs a line per family; the rest matches both.
      if (rule.proto == config::FirewallProto::kIcmp) {
        body.push_back(Statement(rule, Family::kV4, {}));
        if (!rule.specialtarget_dns) body.push_back(Statement(rule, Family::kV6, {}));
      } else {
        body.push_back(Statement(rule, Family::kAny, {}));
      }
      continue;
    }
    std::vector<std::string> v4;
    std::vector<std::string> v6;
    if (IsCidr(rule.dsthost)) {
      (FamilyOf(rule.dsthost) == Family::kV6 ? v6 : v4).push_back(rule.dsthost);
    } else {
      auto it = input.hosts.find(rule.dsthost);
      if (it == input.hosts.end() || it->second.empty()) {
        return Err("rule " + std::to_string(i + 1) + " (" + DescribeRule(rule) +
                   "): " + rule.dsthost + " did not resolve");
      }
      for (const auto& a : it->second) (FamilyOf(a) == Family::kV6 ? v6 : v4).push_back(a);
    }
    if (!v4.empty()) body.push_back(Statement(rule, Family::kV4, v4));
    // The virtual DNS addresses are IPv4: a DNS rule has no IPv6 half.
    if (!v6.empty() && !rule.specialtarget_dns) body.push_back(Statement(rule, Family::kV6, v6));
  }
  body.push_back(input.rules.empty() ? "accept" : "drop");
  return body;
}

std::string DescribeRule(const config::FirewallRule& r) {
  std::string out = r.action == config::FirewallAction::kAccept ? "action=accept" : "action=drop";
  if (!r.dsthost.empty()) out += " dsthost=" + r.dsthost;
  switch (r.proto) {
    case config::FirewallProto::kAny:
      break;
    case config::FirewallProto::kTcp:
      out += " proto=tcp";
      break;
    case config::FirewallProto::kUdp:
      out += " proto=udp";
      break;
    case config::FirewallProto::kIcmp:
      out += " proto=icmp";
      break;
  }
  if (r.dstports) {
    out +=
        " dstports=" + std::to_string(r.dstports->first) + "-" + std::to_string(r.dstports->last);
  }
  if (r.icmptype) out += " icmptype=" + std::to_string(*r.icmptype);
  if (r.specialtarget_dns) out += " specialtarget=dns";
  if (r.expire) out += " expire=" + std::to_string(*r.expire);
  if (!r.comment.empty()) out += " comment=" + r.comment;
  return out;
}

}  // namespace tessera::net
