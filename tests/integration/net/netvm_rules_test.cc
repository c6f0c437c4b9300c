// A netvm's links (net/links.h, through netlink) and nftables ruleset
// (net/ruleset.h, net/firewall.h) applied for real through libnftables
// (net/nft.h) in network namespaces this test makes: a fake internet with servers, a netvm routing
// and NATing to it, and two client namespaces on veths. Asserts NAT, client isolation, no access to
// the netvm itself, anti-spoofing, DNS redirection, each firewall rule kind, expiry, and that a
// failed transaction leaves the rules in force.
//
// Every namespace (and with it every veth and rule) is the test's own and is
// removed in TearDown; nothing touches the host's network.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "integration/net_testing.h"
#include "net/address.h"
#include "net/conntrack.h"
#include "net/firewall.h"
#include "net/links.h"
#include "net/nft.h"
#include "net/ruleset.h"

namespace tessera::net {
namespace {

using namespace ::tessera::net_testing;

using ::testing::HasSubstr;

const Ipv4Net kRange = *Ipv4Net::Parse("10.137.0.0/16");

class NetvmRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    if (!Sh("command -v ip >/dev/null")) GTEST_SKIP() << "needs iproute2 to build the topology";
    std::string p = "tnr" + std::to_string(::getpid()) + "-";
    inet_ = p + "inet";
    netvm_ = p + "netvm";
    a_ = p + "a";
    b_ = p + "b";
    for (const auto& ns : {inet_, netvm_, a_, b_}) {
      ASSERT_TRUE(Sh("ip netns add " + ns)) << ns;
      made_.push_back(ns);
      ASSERT_TRUE(Sh("ip -n " + ns + " link set lo up"));
    }
    // The internet and the netvm's uplink, through net/links.h (netlink).
    inet_fd_.reset(::open(("/run/netns/" + inet_).c_str(), O_RDONLY | O_CLOEXEC));
    netvm_fd_.reset(::open(("/run/netns/" + netvm_).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(inet_fd_ && netvm_fd_);
    ASSERT_TRUE(CreateVeth(netvm_fd_.get(), "up0", inet_fd_.get(), "up1"));
    ASSERT_TRUE(AddAddress(inet_fd_.get(), "up1", *ParseIpv4("192.0.2.1"), 24));
    ASSERT_TRUE(SetLinkUp(inet_fd_.get(), "up1"));
    ASSERT_TRUE(AddAddress(netvm_fd_.get(), "up0", *ParseIpv4("192.0.2.2"), 24));
    ASSERT_TRUE(SetLinkUp(netvm_fd_.get(), "up0"));
    ASSERT_TRUE(AddRoute(netvm_fd_.get(), 0, 0, *ParseIpv4("192.0.2.1"), "up0"));
    ASSERT_TRUE(SetNetSysctl(netvm_fd_.get(), "net/ipv4/ip_forward", "1"));
    // Two clients, each on a veth, with a /32 and a point-to-point route.
    Client(a_, "10.137.0.2");
    Client(b_, "10.137.0.4");
    servers_.push_back(Serve(inet_, {80, 443}, 53));
    servers_.push_back(Serve(netvm_, {22}, 0));
    servers_.push_back(Serve(b_, {80}, 0));
    // The servers are up once the internet answers.
    for (int i = 0; i < 50 && InNetns(netvm_, [] { return Tcp("192.0.2.1", 80); }).empty(); ++i) {
      ::usleep(20000);
    }
  }

  // A client as the network component wires one: a veth, a /32 on each
  // side, point-to-point routes, the netvm's address as the gateway.
  void Client(const std::string& ns, const std::string& ip) {
    uint32_t address = *ParseIpv4(ip);
    uint32_t gateway = *ParseIpv4("10.137.0.3");
    std::string vif = ClientIfname(address, kRange);
    UniqueFd client(::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(client);
    auto ok = CreateVeth(netvm_fd_.get(), vif, client.get(), "eth0");
    ASSERT_TRUE(ok) << ok.error().message();
    ASSERT_TRUE(AddAddress(netvm_fd_.get(), vif, gateway, 32));
    ASSERT_TRUE(SetLinkUp(netvm_fd_.get(), vif));
    ASSERT_TRUE(AddRoute(netvm_fd_.get(), address, 32, std::nullopt, vif));
    ASSERT_TRUE(AddAddress(client.get(), "eth0", address, 32));
    ASSERT_TRUE(SetLinkUp(client.get(), "eth0"));
    ASSERT_TRUE(AddRoute(client.get(), gateway, 32, std::nullopt, "eth0"));
    ASSERT_TRUE(AddRoute(client.get(), 0, 0, gateway, "eth0"));
  }

  void TearDown() override {
    for (pid_t pid : servers_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    for (const auto& ns : made_) EXPECT_TRUE(Sh("ip netns del " + ns)) << ns;
  }

  // Applies the netvm's ruleset with these firewall rules for b (a has none).
  Status Apply(const std::vector<config::FirewallRule>& b_rules, int64_t now) {
    NetvmRules rules;
    rules.uplink = "up0";
    rules.dns = {*ParseIpv4("192.0.2.1")};
    FirewallInput a_in;
    FirewallInput b_in;
    b_in.rules = b_rules;
    a_in.now = b_in.now = now;
    rules.clients.push_back(Client("a", "10.137.0.2", TRY(CompileFirewall(a_in))));
    rules.clients.push_back(Client("b", "10.137.0.4", TRY(CompileFirewall(b_in))));
    UniqueFd ns(::open(("/run/netns/" + netvm_).c_str(), O_RDONLY | O_CLOEXEC));
    TRY(RunNft(ns.get(), RenderNetvmRuleset(rules)));
    return {};
  }

  static NetvmClient Client(const std::string& qube, const std::string& ip,
                            std::vector<std::string> firewall,
                            std::vector<std::string> runtime = {}) {
    uint32_t address = *ParseIpv4(ip);
    return {qube, address, ClientIfname(address, kRange), std::move(firewall), std::move(runtime)};
  }

  // Brings the netvm's table from `applied_` to `next` (RenderNetvmUpdate).
  Result<std::string> Update(const NetvmRules& next) {
    std::string script = RenderNetvmUpdate(applied_ ? &*applied_ : nullptr, next);
    UniqueFd ns(::open(("/run/netns/" + netvm_).c_str(), O_RDONLY | O_CLOEXEC));
    TRY(RunNft(ns.get(), script));
    applied_ = next;
    return script;
  }

  std::optional<NetvmRules> applied_;
  std::string inet_, netvm_, a_, b_;
  UniqueFd inet_fd_;
  UniqueFd netvm_fd_;
  std::vector<std::string> made_;
  std::vector<pid_t> servers_;
};

config::FirewallRule Rule(config::FirewallAction action, config::FirewallProto proto) {
  config::FirewallRule r;
  r.action = action;
  r.proto = proto;
  return r;
}

TEST_F(NetvmRulesTest, ClientsReachTheInternetNatedAndNothingElse) {
  ASSERT_TRUE(Apply({}, 1000));
  // NAT'd: the server sees the netvm's uplink address.
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");
  // Not another client, not the netvm's own services (on either address).
  EXPECT_EQ(InNetns(a_, [] { return Tcp("10.137.0.4", 80); }), "");
  EXPECT_EQ(InNetns(a_, [] { return Tcp("10.137.0.3", 22); }), "");
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.2", 22); }), "");
  // A spoofed source is dropped.
  ASSERT_TRUE(Sh("ip -n " + a_ + " addr add 10.137.0.9/32 dev eth0"));
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80, "10.137.0.9"); }), "");
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80, "10.137.0.2"); }), "192.0.2.2");
  // DNS to the virtual address reaches the netvm's resolver.
  EXPECT_EQ(InNetns(a_, [] { return Udp("10.139.1.1", 53); }), "192.0.2.2");
  EXPECT_EQ(InNetns(a_, [] { return Udp("10.139.1.2", 53); }), "192.0.2.2");
}

TEST_F(NetvmRulesTest, EachFirewallRuleAllowsAndBlocksExactlyWhatItSays) {
  auto https = Rule(config::FirewallAction::kAccept, config::FirewallProto::kTcp);
  https.dsthost = "192.0.2.1/32";
  https.dstports = config::PortRange{443, 443};
  https.expire = 2000;
  auto dns = Rule(config::FirewallAction::kAccept, config::FirewallProto::kAny);
  dns.specialtarget_dns = true;
  ASSERT_TRUE(Apply({https, dns}, 1000));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "192.0.2.2");
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "") << "not in the list: dropped";
  EXPECT_EQ(InNetns(b_, [] { return Udp("10.139.1.1", 53); }), "192.0.2.2") << "specialtarget=dns";
  EXPECT_EQ(InNetns(b_, [] { return Udp("192.0.2.1", 53); }), "")
      << "the resolver itself, not through the virtual address";
  // a, with no rules, is unaffected.
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");
  // Expired: compiled again after its time, the rule is gone.
  ASSERT_TRUE(Apply({https, dns}, 2000));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "");
  EXPECT_EQ(InNetns(b_, [] { return Udp("10.139.1.1", 53); }), "192.0.2.2");
  // A drop before an accept wins (first match).
  auto block = Rule(config::FirewallAction::kDrop, config::FirewallProto::kTcp);
  block.dsthost = "192.0.2.1/32";
  block.dstports = config::PortRange{80, 80};
  auto all = Rule(config::FirewallAction::kAccept, config::FirewallProto::kAny);
  ASSERT_TRUE(Apply({block, all}, 1000));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "");
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "192.0.2.2");
}

TEST_F(NetvmRulesTest, LinksComeAndGoThroughNetlink) {
  // Made by SetUp through netlink and working (the internet answers).
  EXPECT_EQ(InNetns(netvm_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");
  auto exists = LinkExists(netvm_fd_.get(), "vif2");
  ASSERT_TRUE(exists) << exists.error().message();
  EXPECT_TRUE(*exists);
  // Deleting one end takes the pair: the client loses its eth0.
  ASSERT_TRUE(DeleteLink(netvm_fd_.get(), "vif2"));
  exists = LinkExists(netvm_fd_.get(), "vif2");
  ASSERT_TRUE(exists);
  EXPECT_FALSE(*exists);
  UniqueFd a(::open(("/run/netns/" + a_).c_str(), O_RDONLY | O_CLOEXEC));
  exists = LinkExists(a.get(), "eth0");
  ASSERT_TRUE(exists);
  EXPECT_FALSE(*exists);
  EXPECT_TRUE(DeleteLink(netvm_fd_.get(), "vif2")) << "gone already: not an error";
  // Bad names are refused before anything is asked of the kernel.
  EXPECT_FALSE(CreateVeth(netvm_fd_.get(), "a-name-longer-than-15", a.get(), "x"));
  EXPECT_FALSE(SetNetSysctl(netvm_fd_.get(), "kernel/hostname", "x"));
  // The sysctl went to the netvm's namespace.
  EXPECT_EQ(InNetns(netvm_,
                    [] {
                      char c = '?';
                      int fd = ::open("/proc/sys/net/ipv4/ip_forward", O_RDONLY);
                      (void)!::read(fd, &c, 1);
                      return std::string(1, c);
                    }),
            "1");
}

// A server on `port` in `ns` that echoes what each connection sends.
pid_t ServeEcho(const std::string& ns, uint16_t port) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int s = ListenIn(ns, port);
  ::signal(SIGCHLD, SIG_IGN);
  for (;;) {
    int c = ::accept(s, nullptr, nullptr);
    if (c < 0) continue;
    if (::fork() == 0) {
      char buf[64];
      ssize_t n;
      while ((n = ::read(c, buf, sizeof(buf))) > 0) (void)!::write(c, buf, static_cast<size_t>(n));
      _exit(0);
    }
    ::close(c);
  }
}

// A TCP connection made from inside `ns` (the socket stays in it).
UniqueFd ConnectFrom(const std::string& ns, const std::string& ip, uint16_t port) {
  UniqueFd out;
  std::thread([&] {
    UniqueFd nsfd(::open(NsFile(ns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd || ::setns(nsfd.get(), CLONE_NEWNET) != 0) return;
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Addr(ip, port);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) out = std::move(s);
  }).join();
  return out;
}

// Sends `text` and waits up to a second for it to come back.
std::string Echo(int fd, const std::string& text) {
  if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    return "";
  }
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1000) <= 0) return "";
  char buf[64];
  ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

TEST_F(NetvmRulesTest, AChangedRuleEndsTheConnectionsItAllowed) {
  servers_.push_back(ServeEcho(inet_, 7000));
  NetvmRules rules;
  rules.uplink = "up0";
  rules.dns = {*ParseIpv4("192.0.2.1")};
  rules.clients.push_back(Client("a", "10.137.0.2", {"accept"}));
  ASSERT_TRUE(Update(rules));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  UniqueFd conn = ConnectFrom(a_, "192.0.2.1", 7000);
  ASSERT_TRUE(conn);
  EXPECT_EQ(Echo(conn.get(), "one"), "one");
  // A runtime rule now drops it: the open connection is checked too.
  rules.clients[0].runtime = {"meta l4proto tcp th dport 7000 drop"};
  ASSERT_TRUE(Update(rules));
  EXPECT_EQ(Echo(conn.get(), "two"), "");
  rules.clients[0].runtime.clear();
  ASSERT_TRUE(Update(rules));
  // (the retransmission of "two" arrives once it is allowed again)
  UniqueFd again = ConnectFrom(a_, "192.0.2.1", 7000);
  ASSERT_TRUE(again);
  EXPECT_EQ(Echo(again.get(), "three"), "three");
}

TEST_F(NetvmRulesTest, UpdatesTouchOnlyWhatChanged) {
  NetvmRules rules;
  rules.uplink = "up0";
  rules.dns = {*ParseIpv4("192.0.2.1")};
  rules.clients.push_back(Client("a", "10.137.0.2", {"accept"}));
  auto first = Update(rules);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_THAT(*first, HasSubstr("delete table"));
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");

  // b joins with a firewall that drops port 80.
  rules.clients.push_back(
      Client("b", "10.137.0.4", {"meta l4proto tcp th dport 80 drop", "accept"}));
  auto added = Update(rules);
  ASSERT_TRUE(added) << added.error().ToString();
  EXPECT_THAT(*added, ::testing::Not(HasSubstr("delete table")));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "");
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "192.0.2.2");
  EXPECT_EQ(InNetns(b_, [] { return Tcp("10.137.0.2", 80); }), "") << "still no client to client";

  // A runtime rule of b, then a's firewall: only their chains are refilled.
  rules.clients[1].runtime = {"meta l4proto tcp th dport 443 drop"};
  rules.clients[0].firewall = {"meta l4proto tcp th dport 80 drop", "accept"};
  auto refilled = Update(rules);
  ASSERT_TRUE(refilled) << refilled.error().ToString();
  EXPECT_THAT(*refilled, HasSubstr("flush chain inet tessera fw-vif4-rt"));
  EXPECT_THAT(*refilled, HasSubstr("flush chain inet tessera fw-vif2\n"));
  EXPECT_THAT(*refilled, ::testing::Not(HasSubstr("chain as-")));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "");
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "");
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 443); }), "192.0.2.2");
  EXPECT_EQ(*Update(rules), "") << "nothing changed";

  // a leaves: nothing of it is forwarded any more; b is untouched.
  rules.clients.erase(rules.clients.begin());
  auto removed = Update(rules);
  ASSERT_TRUE(removed) << removed.error().ToString();
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 443); }), "");
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "");
  UniqueFd ns(::open(("/run/netns/" + netvm_).c_str(), O_RDONLY | O_CLOEXEC));
  auto listed = RunNft(ns.get(), "list table inet tessera");
  ASSERT_TRUE(listed);
  EXPECT_THAT(*listed, ::testing::Not(HasSubstr("vif2")));
  EXPECT_THAT(*listed, HasSubstr("fw-vif4-rt"));
}

TEST_F(NetvmRulesTest, AFailedTransactionLeavesTheRulesInForce) {
  ASSERT_TRUE(Apply({Rule(config::FirewallAction::kAccept, config::FirewallProto::kIcmp)}, 1000));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "");
  UniqueFd ns(::open(("/run/netns/" + netvm_).c_str(), O_RDONLY | O_CLOEXEC));
  std::string broken =
      "table inet tessera\ndelete table inet tessera\ntable inet tessera {\n"
      "  chain forward { type filter hook forward priority filter; policy accept;\n"
      "    ip daddr 1.2.3.4 nonsense\n  }\n}\n";
  auto r = RunNft(ns.get(), broken);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("nft:"));
  EXPECT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 80); }), "") << "the old rules still drop";
  auto listed = RunNft(ns.get(), "list table inet tessera");
  ASSERT_TRUE(listed) << listed.error().message();
  EXPECT_THAT(*listed, HasSubstr("chain fw-vif"));
  EXPECT_THAT(*listed, HasSubstr("firewall of b"));
}

TEST_F(NetvmRulesTest, AnUnlinkedClientsConnectionsAreForgottenAndNoOneElses) {
  ASSERT_TRUE(Apply({}, 1000));
  ASSERT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");
  ASSERT_EQ(InNetns(b_, [] { return Tcp("192.0.2.1", 443); }), "192.0.2.2");
  ASSERT_EQ(InNetns(a_, [] { return Udp("10.139.1.1", 53); }), "192.0.2.2");
  const uint32_t a = *ParseIpv4("10.137.0.2");
  const uint32_t b = *ParseIpv4("10.137.0.4");
  // Closed TCP connections and the DNS exchange stay tracked for a while.
  auto a_before = CountConnections(netvm_fd_.get(), a);
  ASSERT_TRUE(a_before) << a_before.error().ToString();
  ASSERT_GE(*a_before, 2u) << "a's TCP connection and its DNS query are tracked";
  const size_t b_before = *CountConnections(netvm_fd_.get(), b);
  ASSERT_GE(b_before, 1u);
  auto gone = ForgetConnections(netvm_fd_.get(), a);
  ASSERT_TRUE(gone) << gone.error().ToString();
  EXPECT_EQ(*gone, *a_before);
  EXPECT_EQ(*CountConnections(netvm_fd_.get(), a), 0u);
  EXPECT_EQ(*CountConnections(netvm_fd_.get(), b), b_before) << "b's stay";
  EXPECT_EQ(*ForgetConnections(netvm_fd_.get(), a), 0u) << "nothing left: not an error";
  // The client still works afterwards (new entries are made).
  EXPECT_EQ(InNetns(a_, [] { return Tcp("192.0.2.1", 80); }), "192.0.2.2");
}

}  // namespace
}  // namespace tessera::net
