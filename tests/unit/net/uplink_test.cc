// The uplink's untrusted and host-side inputs: the DHCP hook's lines
// (net/dhcp_event.h) and the host's resolv.conf and NAT table (net/host_nat.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "net/address.h"
#include "net/dhcp_event.h"
#include "net/host_nat.h"

namespace tessera::net {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

TEST(DhcpEventTest, ABoundLeaseIsReadWhole) {
  auto event =
      ParseDhcpEvent(R"({"event":"bound","ip":"192.0.2.9","subnet":"255.255.255.0",)"
                     R"("router":"192.0.2.1 192.0.2.2","dns":"192.0.2.53  198.51.100.53"})");
  ASSERT_TRUE(event) << event.error().ToString();
  EXPECT_EQ(event->event, "bound");
  ASSERT_TRUE(event->lease);
  EXPECT_EQ(event->lease->address, Ip("192.0.2.9"));
  EXPECT_EQ(event->lease->prefix, 24);
  EXPECT_EQ(event->lease->router, Ip("192.0.2.1"));  // the first one
  EXPECT_THAT(event->lease->dns, ElementsAre(Ip("192.0.2.53"), Ip("198.51.100.53")));

  auto bare = ParseDhcpEvent(R"({"event":"renew","ip":"198.51.100.7","subnet":"255.255.255.255"})");
  ASSERT_TRUE(bare) << bare.error().ToString();
  EXPECT_EQ(bare->lease->prefix, 32);
  EXPECT_FALSE(bare->lease->router);
  EXPECT_TRUE(bare->lease->dns.empty());
}

TEST(DhcpEventTest, EventsWithoutALease) {
  for (const char* name : {"deconfig", "leasefail", "nak"}) {
    auto event = ParseDhcpEvent(std::string(R"({"event":")") + name + R"(","ip":"junk"})");
    ASSERT_TRUE(event) << name;
    EXPECT_EQ(event->event, name);
    EXPECT_FALSE(event->lease) << name;
  }
}

TEST(DhcpEventTest, AtMostThreeResolvers) {
  auto event = ParseDhcpEvent(
      R"({"event":"bound","ip":"192.0.2.9","dns":"192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4"})");
  ASSERT_TRUE(event);
  EXPECT_EQ(event->lease->dns.size(), kMaxDhcpResolvers);
}

TEST(DhcpEventTest, WhatAHostileNetvmMaySendIsRefusedByField) {
  struct Case {
    const char* line;
    const char* error;
  } cases[] = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {R"({"event":"bound","ip":"192.0.2.9")", "not a JSON object"},
      {R"({"event":"rebind"})", "unknown event"},
      {R"({"event":7})", "event: expected a string"},
      {R"({"event":"bound"})", "ip:"},
      {R"({"event":"bound","ip":"127.0.0.1"})", "ip: 127.0.0.1 is not a usable unicast"},
      {R"({"event":"bound","ip":"0.0.0.0"})", "not a usable unicast"},
      {R"({"event":"bound","ip":"224.0.0.1"})", "not a usable unicast"},
      {R"({"event":"bound","ip":"255.255.255.255"})", "not a usable unicast"},
      {R"({"event":"bound","ip":"169.254.1.1"})", "not a usable unicast"},
      {R"({"event":"bound","ip":"10.139.1.1"})", "not a usable unicast"},
      {R"({"event":"bound","ip":"192.0.2.9","subnet":"255.0.255.0"})", "subnet:"},
      {R"({"event":"bound","ip":"192.0.2.9","subnet":"254.0.0.0"})", "not a mask of /8 to /32"},
      {R"({"event":"bound","ip":"192.0.2.9","router":"127.0.0.1"})", "router:"},
      {R"({"event":"bound","ip":"192.0.2.9","dns":"192.0.2.53 10.139.1.1"})", "dns:"},
      {R"({"event":"bound","ip":"192.0.2.9","dns":["192.0.2.53"]})", "dns: expected a string"},
  };
  for (const Case& c : cases) {
    auto event = ParseDhcpEvent(c.line);
    ASSERT_FALSE(event) << c.line;
    EXPECT_THAT(event.error().message(), HasSubstr(c.error)) << c.line;
  }
  EXPECT_FALSE(ParseDhcpEvent(std::string(kMaxDhcpEventLine + 1, ' ')));
}

TEST(HostNatTest, ResolversOfTheHostLeaveOutLoopbackAndIpv6) {
  EXPECT_THAT(NameserversOf("# generated\n"
                            "nameserver 127.0.0.53\n"
                            "nameserver\t192.0.2.53 # office\n"
                            "nameserver ::1\n"
                            "nameservers 192.0.2.99\n"
                            "search example.org\n"
                            "nameserver 198.51.100.1\r\n"
                            "  nameserver 192.0.2.77\n"),
              ElementsAre(Ip("192.0.2.53"), Ip("198.51.100.1")));
  EXPECT_TRUE(NameserversOf("nameserver 127.0.0.1\n").empty());
}

TEST(HostNatTest, TheHostTableKeepsNetvmsOffTheHostAndApart) {
  EXPECT_EQ(HostNatIfname(Ip("10.139.2.7")), "tsnat7");
  EXPECT_TRUE(kHostNatRange.Contains(kHostNatGateway));
  std::string table = RenderHostNatTable();
  EXPECT_THAT(table, HasSubstr("delete table inet tessera-host-nat"));  // replaced whole
  EXPECT_THAT(table, HasSubstr("iifname \"tsnat*\" drop"));             // the host's input
  EXPECT_THAT(table, HasSubstr("iifname \"tsnat*\" oifname \"tsnat*\" drop"));
  EXPECT_THAT(table, HasSubstr("ip saddr != 10.139.2.0/24 drop"));  // no spoofing
  EXPECT_THAT(table, HasSubstr("ip saddr 10.139.2.0/24 oifname != \"tsnat*\" masquerade"));
  EXPECT_EQ(RemoveHostNatTable(),
            "table inet tessera-host-nat\ndelete table inet tessera-host-nat\n");
}

}  // namespace
}  // namespace tessera::net
