// Qubes firewall rules compiled to nftables statements: every rule kind,
// first match wins (order kept), the implicit drop, expiry, hostnames
// resolved or failing closed.

#include "net/firewall.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera::net {
namespace {

using config::FirewallAction;
using config::FirewallProto;
using config::FirewallRule;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

FirewallRule Rule(FirewallAction action) {
  FirewallRule r;
  r.action = action;
  return r;
}

TEST(Firewall, EmptyListAcceptsEverythingAndAnyListEndsInADrop) {
  EXPECT_THAT(*CompileFirewall({}), ElementsAre("accept"));
  FirewallInput in;
  in.rules.push_back(Rule(FirewallAction::kAccept));
  EXPECT_THAT(*CompileFirewall(in), ElementsAre("accept", "drop"));
}

TEST(Firewall, EveryRuleKindBecomesItsMatch) {
  FirewallInput in;
  FirewallRule web = Rule(FirewallAction::kAccept);
  web.dsthost = "192.168.0.0/16";
  web.proto = FirewallProto::kTcp;
  web.dstports = config::PortRange{443, 443};
  web.comment = "web \"quoted\"";
  FirewallRule range = Rule(FirewallAction::kDrop);
  range.dsthost = "2001:db8::/32";
  range.proto = FirewallProto::kUdp;
  range.dstports = config::PortRange{1000, 2000};
  FirewallRule ping = Rule(FirewallAction::kAccept);
  ping.proto = FirewallProto::kIcmp;
  ping.icmptype = 8;
  FirewallRule dns = Rule(FirewallAction::kAccept);
  dns.specialtarget_dns = true;
  in.rules = {web, range, ping, dns};
  EXPECT_THAT(*CompileFirewall(in),
              ElementsAre("ip daddr 192.168.0.0/16 meta l4proto tcp th dport 443 accept "
                          "comment \"web quoted\"",
                          "ip6 daddr 2001:db8::/32 meta l4proto udp th dport 1000-2000 drop",
                          "meta l4proto icmp icmp type 8 accept",
                          "meta l4proto ipv6-icmp icmpv6 type 8 accept",
                          "ct original ip daddr { 10.139.1.1, 10.139.1.2 } meta l4proto { tcp, "
                          "udp } th dport 53 accept",
                          "drop"));
}

TEST(Firewall, HostnamesUseTheirResolvedAddressesOrFailClosed) {
  FirewallInput in;
  FirewallRule r = Rule(FirewallAction::kAccept);
  r.dsthost = "example.org";
  r.proto = FirewallProto::kTcp;
  in.rules = {r};
  EXPECT_THAT(HostnamesOf(in.rules), ElementsAre("example.org"));
  auto missing = CompileFirewall(in);
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message(),
              HasSubstr("rule 1 (action=accept dsthost=example.org proto=tcp): example.org did "
                        "not resolve"));
  in.hosts["example.org"] = {"192.0.2.1", "2001:db8::1", "192.0.2.2"};
  EXPECT_THAT(*CompileFirewall(in),
              ElementsAre("ip daddr { 192.0.2.1, 192.0.2.2 } meta l4proto tcp accept",
                          "ip6 daddr 2001:db8::1 meta l4proto tcp accept", "drop"));
}

TEST(Firewall, ExpiredRulesVanishButTheDropStays) {
  FirewallInput in;
  FirewallRule soon = Rule(FirewallAction::kAccept);
  soon.dsthost = "10.0.0.0/8";
  soon.expire = 2000;
  FirewallRule later = Rule(FirewallAction::kAccept);
  later.dsthost = "172.16.0.0/12";
  later.expire = 3000;
  in.rules = {soon, later};
  in.now = 1000;
  EXPECT_THAT(*CompileFirewall(in),
              ElementsAre("ip daddr { 10.0.0.0/8, 172.16.0.0/12 } accept", "drop"));
  EXPECT_EQ(NextExpiry(in.rules, in.now), 2000);
  in.now = 2000;
  EXPECT_THAT(*CompileFirewall(in), ElementsAre("ip daddr 172.16.0.0/12 accept", "drop"));
  EXPECT_EQ(NextExpiry(in.rules, in.now), 3000);
  in.now = 3000;
  EXPECT_THAT(*CompileFirewall(in), ElementsAre("drop")) << "all expired: nothing is accepted";
  EXPECT_EQ(NextExpiry(in.rules, in.now), std::nullopt);
}

TEST(Firewall, FirstMatchWinsBecauseTheOrderIsKept) {
  FirewallInput in;
  FirewallRule block = Rule(FirewallAction::kDrop);
  block.dsthost = "10.1.2.3/32";
  FirewallRule allow = Rule(FirewallAction::kAccept);
  allow.dsthost = "10.0.0.0/8";
  in.rules = {block, allow};
  EXPECT_THAT(*CompileFirewall(in),
              ElementsAre("ip daddr 10.1.2.3/32 drop", "ip daddr 10.0.0.0/8 accept", "drop"));
}

TEST(Firewall, RunsOfOneActionShareASetAndOrderAcrossActionsIsKept) {
  FirewallInput in;
  auto port = [](FirewallAction action, const char* host, uint16_t first, uint16_t last) {
    FirewallRule r = Rule(action);
    r.dsthost = host;
    r.proto = FirewallProto::kTcp;
    r.dstports = config::PortRange{first, last};
    return r;
  };
  in.rules = {port(FirewallAction::kDrop, "10.0.0.0/24", 22, 22),
              port(FirewallAction::kDrop, "10.0.1.0/24", 80, 90),
              port(FirewallAction::kAccept, "10.0.0.0/16", 22, 22),
              port(FirewallAction::kAccept, "10.1.0.0/16", 22, 22),
              port(FirewallAction::kDrop, "10.2.0.0/16", 22, 22)};
  FirewallRule udp = Rule(FirewallAction::kDrop);
  udp.proto = FirewallProto::kUdp;
  in.rules.push_back(udp);
  EXPECT_THAT(
      *CompileFirewall(in),
      ElementsAre(
          "ip daddr . meta l4proto . th dport { 10.0.0.0/24 . tcp . 22, 10.0.1.0/24 . tcp . 80-90 "
          "} drop",
          "ip daddr . meta l4proto . th dport { 10.0.0.0/16 . tcp . 22, 10.1.0.0/16 . tcp . 22 } "
          "accept",
          "ip daddr 10.2.0.0/16 meta l4proto tcp th dport 22 drop", "meta l4proto udp drop",
          "drop"));
}

TEST(Firewall, OverlappingElementsKeepTheirOwnRules) {
  FirewallInput in;
  FirewallRule wide = Rule(FirewallAction::kAccept);
  wide.dsthost = "10.0.0.0/8";
  FirewallRule narrow = Rule(FirewallAction::kAccept);
  narrow.dsthost = "10.1.0.0/16";
  FirewallRule other = Rule(FirewallAction::kAccept);
  other.proto = FirewallProto::kTcp;
  other.dstports = config::PortRange{443, 443};
  in.rules = {wide, narrow, other};
  EXPECT_THAT(*CompileFirewall(in),
              ElementsAre("ip daddr 10.0.0.0/8 accept", "ip daddr 10.1.0.0/16 accept",
                          "meta l4proto tcp th dport 443 accept", "drop"));
}

}  // namespace
}  // namespace tessera::net
