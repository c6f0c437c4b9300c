// Addresses of qubes: parsing, and the address book that keeps each qube's
// address stable across restarts.

#include "net/address.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "common/fs.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

TEST(Ipv4, ParsesAndPrintsAndRefusesWhatIsNotOne) {
  EXPECT_EQ(FormatIpv4(*ParseIpv4("10.137.0.2")), "10.137.0.2");
  EXPECT_EQ(*ParseIpv4("255.255.255.255"), 0xffffffffu);
  for (const char* bad :
       {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3"}) {
    EXPECT_FALSE(ParseIpv4(bad)) << bad;
  }
  auto net = Ipv4Net::Parse("10.137.0.0/16");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->ToString(), "10.137.0.0/16");
  EXPECT_TRUE(net->Contains(*ParseIpv4("10.137.255.254")));
  EXPECT_FALSE(net->Contains(*ParseIpv4("10.138.0.1")));
  auto host_bits = Ipv4Net::Parse("10.137.0.1/16");
  ASSERT_FALSE(host_bits);
  EXPECT_THAT(host_bits.error().message(), HasSubstr("did you mean 10.137.0.0/16"));
  EXPECT_FALSE(Ipv4Net::Parse("10.0.0.0/33"));
  EXPECT_EQ(Ipv4Net::Parse("192.168.1.7")->prefix, 32);
}

class AddressBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tessera-addr-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/net/addresses.json";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
  std::string path_;
};

TEST_F(AddressBookTest, EachQubeKeepsItsAddressAcrossLoads) {
  Ipv4Net range = *Ipv4Net::Parse("10.137.0.0/16");
  {
    auto book = AddressBook::Load(path_, range);
    ASSERT_TRUE(book) << book.error().message();
    EXPECT_EQ(FormatIpv4(*book->AddressOf("work")), "10.137.0.2");
    EXPECT_EQ(FormatIpv4(*book->AddressOf("sys-net")), "10.137.0.3");
    EXPECT_EQ(FormatIpv4(*book->AddressOf("work")), "10.137.0.2");
    ASSERT_TRUE(book->Save());
  }
  auto book = AddressBook::Load(path_, range);
  ASSERT_TRUE(book);
  EXPECT_EQ(FormatIpv4(*book->AddressOf("sys-net")), "10.137.0.3");
  // A freed address is given again, the lowest first.
  book->Release("work");
  EXPECT_EQ(FormatIpv4(*book->AddressOf("personal")), "10.137.0.2");
  EXPECT_EQ(FormatIpv4(*book->AddressOf("vault")), "10.137.0.4");
}

TEST_F(AddressBookTest, AChangedRangeGivesNewAddressesAndAFullOneSaysSo) {
  {
    auto book = AddressBook::Load(path_, *Ipv4Net::Parse("10.137.0.0/16"));
    ASSERT_TRUE(book->AddressOf("work"));
    ASSERT_TRUE(book->Save());
  }
  auto book = AddressBook::Load(path_, *Ipv4Net::Parse("192.168.50.0/29"));
  ASSERT_TRUE(book);
  EXPECT_TRUE(book->entries().empty()) << "the old address is outside the new range";
  // /29: .0 network, .1 reserved, .7 broadcast: .2 to .6.
  for (const char* q : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(book->AddressOf(q)) << q;
  EXPECT_EQ(FormatIpv4(*book->AddressOf("e")), "192.168.50.6");
  auto full = book->AddressOf("f");
  ASSERT_FALSE(full);
  EXPECT_THAT(full.error().message(), HasSubstr("no free address left in 192.168.50.0/29"));
  EXPECT_FALSE(AddressBook::Load(path_, *Ipv4Net::Parse("10.0.0.0/30")));
}

TEST_F(AddressBookTest, ABrokenFileIsAnErrorNamingIt) {
  ASSERT_TRUE(MakeDirs(dir_ + "/net"));
  ASSERT_TRUE(WriteFileAtomic(path_, "{\"qubes\": {\"work\": \"10.137.0.999\"}}"));
  auto book = AddressBook::Load(path_, *Ipv4Net::Parse("10.137.0.0/16"));
  ASSERT_FALSE(book);
  EXPECT_THAT(book.error().message(), HasSubstr("addresses.json: qubes.work"));
}

}  // namespace
}  // namespace tessera::net
