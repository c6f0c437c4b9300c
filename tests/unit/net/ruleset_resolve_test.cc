// A netvm's table as text (net/ruleset.h) and the DNS query and answer of
// the firewall's resolver (net/resolve.h), without a network.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "net/address.h"
#include "net/resolve.h"
#include "net/ruleset.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

NetvmRules OneClient(std::string uplink, std::vector<uint32_t> dns) {
  NetvmRules r;
  r.uplink = std::move(uplink);
  r.dns = std::move(dns);
  r.clients.push_back({"work", *ParseIpv4("10.137.0.5"), "vif5", {"accept"}, {}});
  return r;
}

TEST(Ruleset, AClientGoesOnlyToTheUplinkAndNowhereWithoutOne) {
  std::string with = RenderNetvmRuleset(OneClient("eth0", {kVirtualDns1, kVirtualDns2}));
  EXPECT_THAT(with,
              HasSubstr("chain fwd-vif5 {\n    oifname != \"eth0\" drop\n    jump fw-vif5\n"));
  EXPECT_THAT(with, HasSubstr("oifname \"eth0\" masquerade"));
  EXPECT_THAT(with, HasSubstr("chain as-vif5 {\n    ip saddr != 10.137.0.5 drop\n"));
  EXPECT_THAT(with,
              HasSubstr("add element inet tessera forward_clients { \"vif5\" : jump fwd-vif5 }"));
  std::string without = RenderNetvmRuleset(OneClient("", {}));
  EXPECT_THAT(without, HasSubstr("chain fwd-vif5 {\n    drop\n"));
  EXPECT_THAT(without, Not(HasSubstr("\"\"")));  // nft refuses empty names
  EXPECT_THAT(without, Not(HasSubstr("masquerade")));
}

TEST(Ruleset, ANetvmWithRealResolversRedirectsItsOwnVirtualDns) {
  std::string real = RenderNetvmRuleset(OneClient("up0", {*ParseIpv4("192.0.2.53")}));
  EXPECT_THAT(real, HasSubstr("hook output"));
  EXPECT_THAT(real, HasSubstr("ip daddr 10.139.1.1 meta l4proto { tcp, udp } th dport 53 dnat ip "
                              "to 192.0.2.53"));
  // Behind another netvm the virtual addresses are routed on as they are.
  std::string chained = RenderNetvmRuleset(OneClient("eth0", {kVirtualDns1, kVirtualDns2}));
  EXPECT_THAT(chained, Not(HasSubstr("ip daddr 10.139.1.1 meta l4proto { tcp, udp } th dport 53 "
                                     "dnat ip to 10.139.1.1\n  }")));
  EXPECT_EQ(chained.find("chain dns-local {\n    type nat hook output priority -100; policy "
                         "accept;\n    ip daddr"),
            std::string::npos);
}

std::string Answer(const std::string& query, const std::string& tail, uint16_t flags,
                   uint16_t answers) {
  std::string p = query;
  p[2] = static_cast<char>(flags >> 8);
  p[3] = static_cast<char>(flags & 0xff);
  p[7] = static_cast<char>(answers);
  return p + tail;
}

TEST(Resolve, QueriesAndAnswers) {
  std::string q = BuildQuery(0x1234, "svc.test");
  EXPECT_EQ(q.substr(12), std::string("\x03svc\x04test\x00\x00\x01\x00\x01", 14));
  // A CNAME, then two A records (compressed names).
  std::string cname = std::string("\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x02\xc0\x0c", 14);
  std::string a1 =
      std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01", 16);
  std::string a2 =
      std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x00\x00\x07", 16);
  auto parsed = ParseAnswer(0x1234, Answer(q, cname + a1 + a2, 0x8180, 3));
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(*parsed, (std::vector<uint32_t>{*ParseIpv4("192.0.2.1"), *ParseIpv4("10.0.0.7")}));
  EXPECT_EQ(ParseAnswer(0x1234, Answer(q, "", 0x8183, 0)).error().errno_value(), ENOENT);
  EXPECT_EQ(ParseAnswer(0x1234, Answer(q, "", 0x8180, 0)).error().errno_value(), ENOENT);
  EXPECT_FALSE(ParseAnswer(0x4321, Answer(q, a1, 0x8180, 1))) << "another query's answer";
  EXPECT_FALSE(ParseAnswer(0x1234, Answer(q, a1.substr(0, 14), 0x8180, 1))) << "truncated";
  EXPECT_FALSE(ParseAnswer(0x1234, Answer(q, "", 0x0100, 0))) << "a query, not an answer";
}

}  // namespace
}  // namespace tessera::net
