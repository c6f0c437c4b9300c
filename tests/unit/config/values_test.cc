#include "config/values.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera::config {
namespace {

TEST(QubeNameTest, AcceptsQubesNames) {
  for (const char* name : {"work", "sys-net", "a", "Work_2.test", "disposable1", "disp",
                           "dispx1", "abcdefghijklmnopqrstuvwxyz01234"}) {
    EXPECT_TRUE(CheckQubeName(name)) << name;
  }
}

TEST(QubeNameTest, RejectsBadSyntaxWithReason) {
  struct Case {
    const char* name;
    const char* reason;
  } cases[] = {
      {"", "empty"},
      {"abcdefghijklmnopqrstuvwxyz012345", "longer than 31"},
      {"1work", "start with a letter"},
      {"-work", "start with a letter"},
      {".", "start with a letter"},
      {"..", "start with a letter"},
      {"@anyvm", "start with a letter"},
      {"wo rk", "only letters"},
      {"wo/rk", "only letters"},
      {"work\xc3\xa9", "only letters"},
      {"none", "reserved"},
      {"None", "reserved"},
      {"default", "reserved"},
      {"dom0", "reserved"},
      {"Domain-0", "reserved"},
      {"disp7", "generated disposables"},
      {"DISP1234", "generated disposables"},
      {"sys-dm", "-dm"},
  };
  for (const Case& c : cases) {
    Status result = CheckQubeName(c.name);
    ASSERT_FALSE(result) << c.name;
    EXPECT_NE(result.error().message().find(c.reason), std::string::npos)
        << c.name << ": " << result.error().message();
  }
}

TEST(TagTest, Syntax) {
  EXPECT_TRUE(CheckTag("work"));
  EXPECT_TRUE(CheckTag("created-by-dom0_x"));
  EXPECT_FALSE(CheckTag(""));
  EXPECT_FALSE(CheckTag("a b"));
  EXPECT_FALSE(CheckTag("a.b"));
  EXPECT_FALSE(CheckTag(std::string(65, 'a')));
}

TEST(DstHostTest, NormalisesAddressesAndNetworks) {
  EXPECT_EQ(*NormaliseDstHost("10.0.0.0/8"), "10.0.0.0/8");
  EXPECT_EQ(*NormaliseDstHost("192.168.1.7"), "192.168.1.7/32");
  EXPECT_EQ(*NormaliseDstHost("0.0.0.0/0"), "0.0.0.0/0");
  EXPECT_EQ(*NormaliseDstHost("2001:DB8:0:0::/32"), "2001:db8::/32");
  EXPECT_EQ(*NormaliseDstHost("::1"), "::1/128");
  EXPECT_EQ(*NormaliseDstHost("fe80::/10"), "fe80::/10");
  EXPECT_EQ(*NormaliseDstHost("Example.COM"), "example.com");
  EXPECT_EQ(*NormaliseDstHost("my_host-1.internal"), "my_host-1.internal");
}

TEST(DstHostTest, RejectsHostBitsWithSuggestion) {
  Result<std::string> v4 = NormaliseDstHost("10.0.0.1/8");
  ASSERT_FALSE(v4);
  EXPECT_NE(v4.error().message().find("did you mean 10.0.0.0/8?"), std::string::npos);
  Result<std::string> v6 = NormaliseDstHost("2001:db8::1/64");
  ASSERT_FALSE(v6);
  EXPECT_NE(v6.error().message().find("did you mean 2001:db8::/64?"), std::string::npos);
}

TEST(DstHostTest, RejectsMalformed) {
  for (const char* bad : {"", "10.0.0.300", "10.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/",
                          "10.0.0.0/08x", "::g", "2001:db8::/129", "exa mple.com", "a/b",
                          "host;rm", ".example.com", "a..b", "-x.org", "1.2.3.4/8/9"}) {
    EXPECT_FALSE(NormaliseDstHost(bad)) << bad;
  }
}

TEST(PortRangeTest, ParsesAndFormats) {
  EXPECT_EQ(*ParsePortRange("443"), (PortRange{443, 443}));
  EXPECT_EQ(*ParsePortRange("0"), (PortRange{0, 0}));
  EXPECT_EQ(*ParsePortRange("1024-65535"), (PortRange{1024, 65535}));
  EXPECT_EQ(*ParsePortRange("22-22"), (PortRange{22, 22}));
  EXPECT_EQ(FormatPortRange({22, 22}), "22");
  EXPECT_EQ(FormatPortRange({1, 2}), "1-2");
  for (const char* bad : {"", "65536", "-1", "+5", "1-", "-5", "5-4", "a", "1 - 2", "1-2-3",
                          "99999999999999999999999"}) {
    EXPECT_FALSE(ParsePortRange(bad)) << bad;
  }
}

TEST(UuidTest, DerivedUuidIsRfc4122Version5) {
  // Expected values from python3: uuid.uuid5(UUID("43b394f7-1606-40c2-9213-a1bbcd96107e"), name)
  EXPECT_EQ(DeriveUuid("work"), "1361ba56-f2b5-5664-b47a-960c7df9fefd");
  EXPECT_EQ(DeriveUuid("base"), "feb30ac2-01f8-5513-bc5b-c08e3232eb14");
  EXPECT_EQ(DeriveUuid(std::string(31, 'x')), "27da839c-8768-56c8-a89f-8b2f5ccf5c91");
  EXPECT_EQ(DeriveUuid("sys-net"), "09625cac-fe27-5278-a104-223f1ce4ad1e");
  EXPECT_EQ(DeriveUuid("a"), "c183e8aa-9613-57bd-834d-67efec1e01a3");
  EXPECT_EQ(DeriveUuid(""), "7b2504b0-4e01-5642-87dc-fce3ada51ff3");
  EXPECT_EQ(DeriveUuid("work"), DeriveUuid("work"));
  EXPECT_NE(DeriveUuid("work"), DeriveUuid("Work"));
}

TEST(UuidTest, NormalisesAndRejects) {
  EXPECT_EQ(*NormaliseUuid("1361BA56-F2B5-5664-B47A-960C7DF9FEFD"),
            "1361ba56-f2b5-5664-b47a-960c7df9fefd");
  EXPECT_FALSE(NormaliseUuid("1361ba56f2b55664b47a960c7df9fefd"));
  EXPECT_FALSE(NormaliseUuid("1361ba56-f2b5-5664-b47a-960c7df9fefg"));
  EXPECT_FALSE(NormaliseUuid("1361ba56-f2b5-5664-b47a-960c7df9fef"));
}

}  // namespace
}  // namespace tessera::config

namespace tessera::config {
namespace {

TEST(NetworkValues, AddressesNetworksAndInterfaceNames) {
  EXPECT_EQ(*NormaliseIpv4Address("192.0.2.1"), "192.0.2.1");
  EXPECT_FALSE(NormaliseIpv4Address("192.0.2.1/32"));
  EXPECT_FALSE(NormaliseIpv4Address("example.com"));
  EXPECT_EQ(*NormaliseIpv4Network("10.137.0.0/16", 8, 24), "10.137.0.0/16");
  EXPECT_THAT(NormaliseIpv4Network("10.137.0.0/28", 8, 24).error().message(),
              ::testing::HasSubstr("/8 to /24"));
  EXPECT_FALSE(NormaliseIpv4Network("10.137.0.0", 8, 24));
  EXPECT_EQ(*NormaliseIpv4Interface("192.0.2.7/24"), "192.0.2.7/24");
  EXPECT_FALSE(NormaliseIpv4Interface("192.0.2.7/0"));
  EXPECT_FALSE(NormaliseIpv4Interface("192.0.2.7"));
  EXPECT_TRUE(CheckIfname("enp3s0"));
  EXPECT_TRUE(CheckIfname("wlan0.100"));
  for (const char* bad : {"", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"}) {
    EXPECT_FALSE(CheckIfname(bad)) << bad;
  }
}

}  // namespace
}  // namespace tessera::config
