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

// One rule for one address family, before merging.
struct Atom {
  const config::FirewallRule* rule = nullptr;
  Family family = Family::kAny;
  std::vector<std::string> addresses;
};

// A rule that can share a set with others of its run: IPv4 or no address,
// tcp/udp or any protocol, no ICMP type, not the DNS special target, and
// something to match.
bool Mergeable(const Atom& a) {
  const config::FirewallRule& r = *a.rule;
  if (r.specialtarget_dns || r.proto == config::FirewallProto::kIcmp) return false;
  if (a.family == Family::kV6) return false;
  return !a.addresses.empty() || r.proto != config::FirewallProto::kAny;
}

// The closed interval of an IPv4 address or CIDR (host order).
std::pair<uint32_t, uint32_t> Interval(const std::string& cidr) {
  size_t slash = cidr.find('/');
  uint32_t a = ParseIpv4(cidr.substr(0, slash)).value_or(0);
  int prefix = slash == std::string::npos ? 32 : std::stoi(cidr.substr(slash + 1));
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return {a & mask, (a & mask) | ~mask};
}

struct Element {
  std::pair<uint32_t, uint32_t> address{0, 0};
  config::FirewallProto proto = config::FirewallProto::kAny;
  config::PortRange ports{0, 65535};
  std::string text;
};

bool Overlap(const Element& a, const Element& b) {
  return a.proto == b.proto && a.address.first <= b.address.second &&
         b.address.first <= a.address.second && a.ports.first <= b.ports.last &&
         b.ports.first <= a.ports.last;
}

// A run of rules with the same action: in Qubes' first-match semantics
// their order among themselves does not matter, so rules of the same shape
// become one rule matching a set (one lookup instead of a rule each, and
// one statement for nft to parse instead of hundreds). Elements that
// overlap (nft refuses them in one interval set) keep their own rules.
void EmitRun(const std::vector<Atom>& run, std::vector<std::string>& body) {
  struct Group {
    bool address = false;
    config::FirewallProto proto = config::FirewallProto::kAny;
    bool ports = false;
    std::vector<const Atom*> atoms;
    std::vector<Element> elements;
  };
  std::vector<Group> groups;
  for (const Atom& a : run) {
    const config::FirewallRule& r = *a.rule;
    bool address = !a.addresses.empty();
    bool ports = r.dstports.has_value();
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.address == address && g.proto == r.proto && g.ports == ports;
    });
    if (it == groups.end()) {
      groups.push_back(Group{address, r.proto, ports, {}, {}});
      it = groups.end() - 1;
    }
    it->atoms.push_back(&a);
    std::vector<std::string> addresses = address ? a.addresses : std::vector<std::string>{""};
    for (const std::string& addr : addresses) {
      Element e;
      e.proto = r.proto;
      std::vector<std::string> parts;
      if (address) {
        e.address = Interval(addr);
        parts.push_back(addr);
      } else {
        e.address = {0, ~uint32_t{0}};
      }
      if (r.proto != config::FirewallProto::kAny) {
        parts.push_back(r.proto == config::FirewallProto::kTcp ? "tcp" : "udp");
      }
      if (ports) {
        e.ports = *r.dstports;
        parts.push_back(r.dstports->first == r.dstports->last
                            ? std::to_string(r.dstports->first)
                            : std::to_string(r.dstports->first) + "-" +
                                  std::to_string(r.dstports->last));
      }
      for (const auto& p : parts) e.text += (e.text.empty() ? "" : " . ") + p;
      it->elements.push_back(std::move(e));
    }
  }
  for (const Group& g : groups) {
    bool merge = g.elements.size() >= 2;
    for (size_t i = 0; merge && i < g.elements.size(); ++i) {
      for (size_t j = i + 1; merge && j < g.elements.size(); ++j) {
        if (Overlap(g.elements[i], g.elements[j])) merge = false;
      }
    }
    if (!merge) {
      for (const Atom* a : g.atoms) body.push_back(Statement(*a->rule, a->family, a->addresses));
      continue;
    }
    std::vector<std::string> keys;
    if (g.address) keys.push_back("ip daddr");
    if (g.proto != config::FirewallProto::kAny) keys.push_back("meta l4proto");
    if (g.ports) keys.push_back("th dport");
    std::string key;
    for (const auto& k : keys) key += (key.empty() ? "" : " . ") + k;
    std::string set;
    for (const auto& e : g.elements) set += (set.empty() ? "" : ", ") + e.text;
    body.push_back(
        key + " { " + set + " } " +
        (g.atoms.front()->rule->action == config::FirewallAction::kAccept ? "accept" : "drop"));
  }
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
  std::vector<Atom> atoms;
  for (size_t i = 0; i < input.rules.size(); ++i) {
    const config::FirewallRule& rule = input.rules[i];
    if (rule.expire && *rule.expire <= input.now) continue;
    if (rule.dsthost.empty()) {
      // No address: ICMP needs a line per family; the rest matches both.
      if (rule.proto == config::FirewallProto::kIcmp) {
        atoms.push_back({&rule, Family::kV4, {}});
        if (!rule.specialtarget_dns) atoms.push_back({&rule, Family::kV6, {}});
      } else {
        atoms.push_back({&rule, Family::kAny, {}});
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
    if (!v4.empty()) atoms.push_back({&rule, Family::kV4, v4});
    // The virtual DNS addresses are IPv4: a DNS rule has no IPv6 half.
    if (!v6.empty() && !rule.specialtarget_dns) atoms.push_back({&rule, Family::kV6, v6});
  }
  std::vector<std::string> body;
  std::vector<Atom> run;
  auto flush = [&] {
    if (run.size() == 1) {
      body.push_back(Statement(*run[0].rule, run[0].family, run[0].addresses));
    } else if (!run.empty()) {
      EmitRun(run, body);
    }
    run.clear();
  };
  for (const Atom& a : atoms) {
    if (!Mergeable(a)) {
      flush();
      body.push_back(Statement(*a.rule, a.family, a.addresses));
      continue;
    }
    if (!run.empty() && run.front().rule->action != a.rule->action) flush();
    run.push_back(a);
  }
  flush();
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
