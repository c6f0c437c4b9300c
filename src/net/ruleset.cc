#include "net/ruleset.h"

#include "net/address.h"

namespace tessera::net {

namespace {

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

std::string ClientIfname(uint32_t address, const Ipv4Net& range) {
  return "vif" + std::to_string(address - range.address);
}

std::string FirewallChainName(const NetvmClient& client) { return "fw-" + client.ifname; }

std::string RenderNetvmRuleset(const NetvmRules& r) {
  std::string out;
  auto line = [&](int indent, const std::string& text) {
    out.append(static_cast<size_t>(indent) * 2, ' ');
    out += text;
    out += '\n';
  };
  // Create-then-delete makes the delete valid on the first run; all three
  // are one transaction.
  line(0, std::string("table inet ") + kTableName);
  line(0, std::string("delete table inet ") + kTableName);
  line(0, std::string("table inet ") + kTableName + " {");

  line(1, "chain antispoof {");
  line(2, "type filter hook prerouting priority raw; policy accept;");
  for (const auto& c : r.clients) {
    line(2, "iifname " + Quoted(c.ifname) + " ip saddr != " + FormatIpv4(c.address) + " drop");
    line(2, "iifname " + Quoted(c.ifname) + " meta nfproto ipv4 accept");
    if (!r.ipv6) line(2, "iifname " + Quoted(c.ifname) + " drop");  // IPv6, ARP-less rest
  }
  line(1, "}");

  line(1, "chain dns {");
  line(2, "type nat hook prerouting priority dstnat; policy accept;");
  if (!r.dns.empty()) {
    const uint32_t virtual_dns[2] = {kVirtualDns1, kVirtualDns2};
    for (size_t i = 0; i < 2; ++i) {
      uint32_t to = r.dns[i < r.dns.size() ? i : 0];
      for (const auto& c : r.clients) {
        line(2, "iifname " + Quoted(c.ifname) + " ip daddr " + FormatIpv4(virtual_dns[i]) +
                    " meta l4proto { tcp, udp } th dport 53 dnat ip to " + FormatIpv4(to));
      }
    }
  }
  line(1, "}");

  // The netvm's own programs use the virtual addresses too (every qube's
  // resolv.conf names them): a netvm with real resolvers redirects itself.
  line(1, "chain dns-local {");
  line(2, "type nat hook output priority -100; policy accept;");
  if (!r.dns.empty() && r.dns[0] != kVirtualDns1) {
    const uint32_t virtual_dns[2] = {kVirtualDns1, kVirtualDns2};
    for (size_t i = 0; i < 2; ++i) {
      uint32_t to = r.dns[i < r.dns.size() ? i : 0];
      line(2, "ip daddr " + FormatIpv4(virtual_dns[i]) +
                  " meta l4proto { tcp, udp } th dport 53 dnat ip to " + FormatIpv4(to));
    }
  }
  line(1, "}");

  line(1, "chain input {");
  line(2, "type filter hook input priority filter; policy accept;");
  for (const auto& c : r.clients) {
    line(2, "iifname " + Quoted(c.ifname) + " ct state established,related accept");
    line(2, "iifname " + Quoted(c.ifname) + " ct status dnat accept");  // its redirected DNS
    line(2, "iifname " + Quoted(c.ifname) + " drop");
  }
  line(1, "}");

  line(1, "chain forward {");
  line(2, "type filter hook forward priority filter; policy drop;");
  line(2, "ct state established,related accept");
  line(2, "ct state invalid drop");
  for (const auto& c : r.clients) {
    // Only out through the uplink: never to another client.
    if (r.uplink.empty()) {
      line(2, "iifname " + Quoted(c.ifname) + " drop");  // nowhere to go
    } else {
      line(2, "iifname " + Quoted(c.ifname) + " oifname != " + Quoted(r.uplink) + " drop");
    }
    line(2, "iifname " + Quoted(c.ifname) + " jump " + FirewallChainName(c));
  }
  line(1, "}");

  for (const auto& c : r.clients) {
    line(1, "chain " + FirewallChainName(c) + " {");
    line(2, "comment " + Quoted("firewall of " + c.qube) + ";");
    if (c.firewall.empty()) {
      line(2, "drop");  // nothing compiled: nothing passes
    } else {
      for (const auto& s : c.firewall) line(2, s);
    }
    line(1, "}");
  }

  line(1, "chain nat {");
  line(2, "type nat hook postrouting priority srcnat; policy accept;");
  if (!r.uplink.empty()) line(2, "oifname " + Quoted(r.uplink) + " masquerade");
  line(1, "}");
  line(0, "}");
  return out;
}

}  // namespace tessera::net
