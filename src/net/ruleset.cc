#include "net/ruleset.h"

#include <map>

#include "net/address.h"

namespace tessera::net {

namespace {

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

const std::string kTable = std::string("inet ") + kTableName;

// The four maps from a client's interface to its chain of each stage.
struct Stage {
  const char* map;     // in the table
  const char* prefix;  // of the client's chain
};
constexpr Stage kStages[] = {{"antispoof_clients", "as-"},
                             {"dns_clients", "dns-"},
                             {"input_clients", "in-"},
                             {"forward_clients", "fwd-"}};

std::string StageChain(const Stage& stage, const NetvmClient& c) { return stage.prefix + c.ifname; }

class Script {
 public:
  void Line(int indent, const std::string& text) {
    out_.append(static_cast<size_t>(indent) * 2, ' ');
    out_ += text;
    out_ += '\n';
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// The virtual DNS addresses to the netvm's resolvers (the second to the
// second, if there is one).
void RenderDnsRedirect(const NetvmRules& r, Script& s) {
  const uint32_t virtual_dns[2] = {kVirtualDns1, kVirtualDns2};
  for (size_t i = 0; i < 2; ++i) {
    uint32_t to = r.dns[i < r.dns.size() ? i : 0];
    s.Line(2, "ip daddr " + FormatIpv4(virtual_dns[i]) +
                  " meta l4proto { tcp, udp } th dport 53 dnat ip to " + FormatIpv4(to));
  }
}

// Everything the clients share: the base chains and their maps, the
// netvm's own DNS redirect, masquerade.
void RenderShared(const NetvmRules& r, Script& s) {
  s.Line(0, "table " + kTable + " {");
  for (const Stage& stage : kStages) {
    s.Line(1, std::string("map ") + stage.map + " {");
    s.Line(2, "type ifname : verdict;");
    s.Line(1, "}");
  }
  s.Line(1, "chain antispoof {");
  s.Line(2, "type filter hook prerouting priority raw; policy accept;");
  s.Line(2, "iifname vmap @antispoof_clients");
  s.Line(2, "iifname \"vif*\" drop");  // a client's veth not (or no longer) known
  s.Line(1, "}");
  s.Line(1, "chain dns {");
  s.Line(2, "type nat hook prerouting priority dstnat; policy accept;");
  s.Line(2, "iifname vmap @dns_clients");
  s.Line(1, "}");
  // The netvm's own programs use the virtual addresses too (every qube's
  // resolv.conf names them): a netvm with real resolvers redirects itself.
  s.Line(1, "chain dns-local {");
  s.Line(2, "type nat hook output priority -100; policy accept;");
  if (!r.dns.empty() && r.dns[0] != kVirtualDns1) RenderDnsRedirect(r, s);
  s.Line(1, "}");
  s.Line(1, "chain input {");
  s.Line(2, "type filter hook input priority filter; policy accept;");
  s.Line(2, "iifname vmap @input_clients");
  s.Line(2, "iifname \"vif*\" drop");
  s.Line(1, "}");
  s.Line(1, "chain forward {");
  s.Line(2, "type filter hook forward priority filter; policy drop;");
  // Answers pass; everything a client sends goes through its chains on
  // every packet, so a changed or expired rule also ends the connections it
  // allowed.
  s.Line(2, "ct state invalid drop");
  s.Line(2, "ct direction reply accept");
  s.Line(2, "ct state related accept");
  s.Line(2, "iifname vmap @forward_clients");
  s.Line(1, "}");
  s.Line(1, "chain nat {");
  s.Line(2, "type nat hook postrouting priority srcnat; policy accept;");
  if (!r.uplink.empty()) s.Line(2, "oifname " + Quoted(r.uplink) + " masquerade");
  s.Line(1, "}");
  s.Line(0, "}");
}

void RenderStatements(const std::vector<std::string>& statements, Script& s) {
  for (const auto& line : statements) s.Line(2, line);
}

void RenderFirewallChain(const NetvmClient& c, Script& s) {
  s.Line(1, "chain " + FirewallChainName(c) + " {");
  s.Line(2, "comment " + Quoted("firewall of " + c.qube) + ";");
  s.Line(2, "jump " + RuntimeChainName(c));
  if (c.firewall.empty()) {
    s.Line(2, "drop");  // nothing compiled: nothing passes
  } else {
    RenderStatements(c.firewall, s);
  }
  s.Line(1, "}");
}

void RenderRuntimeChain(const NetvmClient& c, Script& s) {
  s.Line(1, "chain " + RuntimeChainName(c) + " {");
  s.Line(2, "comment " + Quoted("runtime rules of " + c.qube) + ";");
  RenderStatements(c.runtime, s);
  s.Line(1, "}");
}

// A client's chains, then its map elements (which refer to them).
void RenderAddClient(const NetvmRules& r, const NetvmClient& c, Script& s) {
  const std::string addr = FormatIpv4(c.address);
  s.Line(0, "table " + kTable + " {");
  s.Line(1, "chain as-" + c.ifname + " {");
  s.Line(2, "ip saddr != " + addr + " drop");
  s.Line(2, "meta nfproto ipv4 accept");
  if (!r.ipv6) s.Line(2, "drop");  // IPv6, and anything else that is not IPv4
  s.Line(1, "}");
  s.Line(1, "chain dns-" + c.ifname + " {");
  if (!r.dns.empty()) RenderDnsRedirect(r, s);
  s.Line(1, "}");
  s.Line(1, "chain in-" + c.ifname + " {");
  s.Line(2, "ct state established,related accept");
  s.Line(2, "ct status dnat accept");  // its redirected DNS
  s.Line(2, "drop");
  s.Line(1, "}");
  RenderRuntimeChain(c, s);
  RenderFirewallChain(c, s);
  s.Line(1, "chain fwd-" + c.ifname + " {");
  // Only out through the uplink: never to another client.
  s.Line(2, r.uplink.empty() ? "drop" : "oifname != " + Quoted(r.uplink) + " drop");
  s.Line(2, "jump " + FirewallChainName(c));
  s.Line(1, "}");
  s.Line(0, "}");
  for (const Stage& stage : kStages) {
    s.Line(0, std::string("add element ") + kTable + " " + stage.map + " { " + Quoted(c.ifname) +
                  " : jump " + StageChain(stage, c) + " }");
  }
}

void RenderRemoveClient(const NetvmClient& c, Script& s) {
  for (const Stage& stage : kStages) {
    s.Line(0, std::string("delete element ") + kTable + " " + stage.map + " { " + Quoted(c.ifname) +
                  " }");
  }
  // Emptied first: a chain that still jumps to another cannot go before it.
  const std::vector<std::string> chains = {"as-" + c.ifname,     "dns-" + c.ifname,
                                           "in-" + c.ifname,     "fwd-" + c.ifname,
                                           FirewallChainName(c), RuntimeChainName(c)};
  for (const auto& chain : chains) s.Line(0, "flush chain " + kTable + " " + chain);
  for (const auto& chain : chains) s.Line(0, "delete chain " + kTable + " " + chain);
}

bool SameShared(const NetvmRules& a, const NetvmRules& b) {
  return a.uplink == b.uplink && a.dns == b.dns && a.ipv6 == b.ipv6;
}

}  // namespace

std::string ClientIfname(uint32_t address, const Ipv4Net& range) {
  return "vif" + std::to_string(address - range.address);
}

std::string FirewallChainName(const NetvmClient& client) { return "fw-" + client.ifname; }
std::string RuntimeChainName(const NetvmClient& client) { return "fw-" + client.ifname + "-rt"; }

std::string RenderNetvmRuleset(const NetvmRules& r) {
  Script s;
  // Create-then-delete makes the delete valid on the first run; all of it
  // is one transaction.
  s.Line(0, "table " + kTable);
  s.Line(0, "delete table " + kTable);
  RenderShared(r, s);
  for (const auto& c : r.clients) RenderAddClient(r, c, s);
  return s.Take();
}

std::string RenderNetvmUpdate(const NetvmRules* before, const NetvmRules& after) {
  if (before == nullptr || !SameShared(*before, after)) return RenderNetvmRuleset(after);
  std::map<std::string, const NetvmClient*> old_clients;
  for (const auto& c : before->clients) old_clients[c.ifname] = &c;
  std::map<std::string, const NetvmClient*> new_clients;
  for (const auto& c : after.clients) new_clients[c.ifname] = &c;
  Script s;
  for (const auto& [ifname, c] : old_clients) {
    auto it = new_clients.find(ifname);
    if (it == new_clients.end() || it->second->address != c->address ||
        it->second->qube != c->qube) {
      RenderRemoveClient(*c, s);
    }
  }
  for (const auto& [ifname, c] : new_clients) {
    auto it = old_clients.find(ifname);
    if (it == old_clients.end() || it->second->address != c->address ||
        it->second->qube != c->qube) {
      RenderAddClient(after, *c, s);
      continue;
    }
    // Only its rules changed: refill the chains that differ.
    if (it->second->runtime != c->runtime) {
      s.Line(0, "flush chain " + kTable + " " + RuntimeChainName(*c));
      s.Line(0, "table " + kTable + " {");
      RenderRuntimeChain(*c, s);
      s.Line(0, "}");
    }
    if (it->second->firewall != c->firewall) {
      s.Line(0, "flush chain " + kTable + " " + FirewallChainName(*c));
      s.Line(0, "table " + kTable + " {");
      RenderFirewallChain(*c, s);
      s.Line(0, "}");
    }
  }
  return s.Take();
}

std::string RenderQubeInputTable() {
  return "table inet tessera-in\n"
         "delete table inet tessera-in\n"
         "table inet tessera-in {\n"
         "  chain input {\n"
         "    type filter hook input priority filter; policy drop;\n"
         "    iif lo accept\n"
         "    ct state established,related accept\n"
         "    meta l4proto { icmp, ipv6-icmp } accept\n"
         "  }\n"
         "}\n";
}

}  // namespace tessera::net
