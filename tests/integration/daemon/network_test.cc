// Qubes' network through the real daemon (docs/NETWORK.md): tesserad runs in
// a network namespace this test made (its "host"), whose interface `ntup0`
// is a veth into a fake internet namespace with TCP servers and a DNS
// resolver. nt-net takes ntup0 as its uplink, nt-fw is its client and the
// netvm of the app qubes, nt-vault is offline. Asserts the chain, NAT, DNS,
// isolation, anti-spoofing, the firewall (declared, runtime, host names,
// expiry), a netvm restart, a live netvm change, recovery after kill -9, the
// uplink given back, and the daemon's namespace and the real host's network
// unchanged afterwards.

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "daemon_fixture.h"
#include "integration/net_testing.h"
#include "net/address.h"
#include "net/conntrack.h"
#include "net/links.h"
#include "net/resolve.h"

namespace tessera::daemon_testing {
namespace {

using namespace ::tessera::net_testing;
using ::testing::Contains;
using ::testing::MatchesRegex;
using ::testing::Not;

// What both systems share (WriteSystem puts it first): the policy
// directory and the template.
constexpr const char* kBaseSystem = R"(
policy_dir = "%POLICY%"

[qubes.nt-base]
class = "template"
source = "busybox"
)";

constexpr const char* kNetSystem = R"(
[qubes.nt-net]
class = "app"
template = "nt-base"
provides_network = true
uplink = "ntup0"
uplink_address = "192.0.2.2/24"
uplink_gateway = "192.0.2.1"
uplink_dns = ["192.0.2.1"]
memory = 128

[qubes.nt-fw]
class = "app"
template = "nt-base"
provides_network = true
netvm = "nt-net"
memory = 128

[qubes.nt-a]
class = "app"
template = "nt-base"
netvm = "nt-fw"
memory = 128
firewall_runtime = "reset-on-apply"

[qubes.nt-b]
class = "app"
template = "nt-base"
netvm = "%B_NETVM%"
memory = 128
firewall = [
  { action = "accept", specialtarget = "dns" },
  { action = "accept", dsthost = "svc.test", proto = "tcp", dstports = "8080" },
]

[qubes.nt-vault]
class = "app"
template = "nt-base"
memory = 128
)";

// The other uplinks: nt-net by DHCP from the internet's udhcpd, nt-hn by a
// veth to the daemon's namespace, which NATs to its own route out.
constexpr const char* kUplinkSystem = R"(
[qubes.nt-net]
class = "app"
template = "nt-base"
provides_network = true
uplink = "ntup0"
memory = 128

[qubes.nt-hn]
class = "app"
template = "nt-base"
provides_network = true
uplink = "host-nat"
uplink_dns = ["198.51.100.1"]
memory = 128

[qubes.nt-a]
class = "app"
template = "nt-base"
netvm = "nt-net"
memory = 128

[qubes.nt-b]
class = "app"
template = "nt-base"
netvm = "nt-hn"
memory = 128
)";

const char* kInternet = "192.0.2.1";

std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Links (without counters), addresses, routes and the nft ruleset of a
// namespace ("" = the caller's).
std::string Snapshot(const std::string& ns) {
  std::string in = ns.empty() ? "" : "ip netns exec " + ns + " ";
  return Capture(in + "ip -d link show 2>&1; " + in + "ip addr show 2>&1; " + in +
                 "ip route show table all 2>&1; " + in + "nft list ruleset 2>&1; " + in +
                 "cat /proc/sys/net/ipv4/ip_forward");
}

class NetworkTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped()) return;
    if (!Sh("command -v ip >/dev/null && command -v nft >/dev/null")) {
      GTEST_SKIP() << "needs iproute2 and nft to build and compare the test's namespaces";
    }
    host_before_ = Snapshot("");
    std::string p = "tnd" + std::to_string(::getpid()) + "-";
    host_ = p + "host";
    inet_ = p + "inet";
    for (const auto& ns : {host_, inet_}) {
      ASSERT_TRUE(Sh("ip netns add " + ns)) << ns;
      made_.push_back(ns);
    }
    host_fd_ = UniqueFd(::open(NsFile(host_).c_str(), O_RDONLY | O_CLOEXEC));
    inet_fd_ = UniqueFd(::open(NsFile(inet_).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(host_fd_ && inet_fd_);
    ASSERT_TRUE(net::SetLinkUp(host_fd_.get(), "lo"));
    ASSERT_TRUE(net::SetLinkUp(inet_fd_.get(), "lo"));
    ASSERT_TRUE(net::CreateVeth(host_fd_.get(), "ntup0", inet_fd_.get(), "up1"));
    ASSERT_TRUE(net::AddAddress(inet_fd_.get(), "up1", *net::ParseIpv4(kInternet), 24));
    ASSERT_TRUE(net::SetLinkUp(inet_fd_.get(), "up1"));
    servers_.push_back(Serve(inet_, {8080, 8081}, 53, kInternet));
    WriteSystem("nt-fw");
    daemon_netns_ = NsFile(host_);
    ns_before_ = Snapshot(host_);
  }

  void TearDown() override {
    for (pid_t pid : servers_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (daemon_pid_ > 0) (void)Cli({"kill", "--all"});
    DaemonTest::TearDown();
    for (const auto& ns : made_) Sh("ip netns del " + ns);
  }

  void WriteSystem(const std::string& b_netvm, const std::string& qubes = kNetSystem) {
    std::string text = kBaseSystem + qubes;
    if (size_t at = text.find("%B_NETVM%"); at != std::string::npos) text.replace(at, 9, b_netvm);
    text.replace(text.find("%POLICY%"), 8, root_ + "/policy.d");
    ASSERT_TRUE(MakeDirs(root_ + "/policy.d"));
    ASSERT_TRUE(
        WriteFileAtomic(root_ + "/policy.d/50-updates.policy",
                        "qubes.UpdatesProxy * @type:TemplateVM @default allow target=nt-net\n"
                        "qubes.UpdatesProxy * @anyvm @anyvm deny\n"));
    ASSERT_TRUE(WriteFileAtomic(config_, text));
  }

  std::string NsOf(const std::string& qube) {
    auto l = List();
    if (l.count(qube) == 0 || !l[qube]["pid"].is_number()) return "";
    return "/proc/" + std::to_string(l[qube]["pid"].get<int>()) + "/ns/net";
  }
  int PidOf(const std::string& qube) {
    auto l = List();
    return l.count(qube) && l[qube]["pid"].is_number() ? l[qube]["pid"].get<int>() : -1;
  }
  std::string AddressOf(const std::string& qube) {
    json book = json::parse(ReadFile(layout_.state_dir + "/net/addresses.json").value_or("{}"),
                            nullptr, false);
    std::string found;
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_object()) {
        for (auto& [k, v] : j.items()) {
          if (k == qube && v.is_string()) found = v.get<std::string>();
          walk(v);
        }
      }
    };
    walk(book);
    return found;
  }
  // A TCP probe from inside `qube`: the address the server saw, or "".
  std::string From(const std::string& qube, const std::string& ip, uint16_t port,
                   const std::string& source = "") {
    std::string ns = NsOf(qube);
    if (ns.empty()) return "no such running qube";
    return InNetns(ns, [&] { return Tcp(ip, port, source); });
  }
  bool HasEth0(const std::string& qube) {
    UniqueFd ns(::open(NsOf(qube).c_str(), O_RDONLY | O_CLOEXEC));
    auto exists = net::LinkExists(ns.get(), "eth0");
    return exists && *exists;
  }
  std::vector<json> NetworkLines(const std::string& qube, const std::string& action) {
    std::vector<json> out;
    std::istringstream in(AuditText());
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.value("kind", "") == "network" && j.value("qube", "") == qube &&
          j.value("action", "") == action) {
        out.push_back(j);
      }
    }
    return out;
  }

  // Runs `argv` in namespace `ns` until TearDown.
  void Spawn(const std::string& ns, std::vector<std::string> argv) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(NsFile(ns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) _exit(126);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      _exit(127);
    }
    ASSERT_GT(pid, 0);
    servers_.push_back(pid);
  }
  // Polls a TCP probe until it answers (a lease takes a moment).
  std::string Eventually(const std::string& qube, const std::string& ip, uint16_t port) {
    std::string got;
    for (int i = 0; i < 100 && got.empty(); ++i) {
      got = From(qube, ip, port);
      if (got.empty()) std::this_thread::sleep_for(100ms);
    }
    return got;
  }

  std::string host_, inet_, host_before_, ns_before_;
  UniqueFd host_fd_, inet_fd_;
  std::vector<std::string> made_;
  std::vector<pid_t> servers_;
};

TEST_F(NetworkTest, TheChainTheFirewallRewiringAndRecovery) {
  StartDaemon();
  CliResult started = Cli({"start", "nt-a"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_EQ(StateOf("nt-fw"), "running") << "the netvm chain starts first";
  EXPECT_EQ(StateOf("nt-net"), "running");
  // The uplink left the daemon's namespace for nt-net's.
  EXPECT_FALSE(*net::LinkExists(host_fd_.get(), "ntup0"));

  // Through nt-fw and nt-net, NATed to nt-net's uplink address.
  EXPECT_EQ(From("nt-a", kInternet, 8080), "192.0.2.2");
  // DNS to the virtual address reaches the internet's resolver.
  {
    std::string ns = NsOf("nt-a");
    std::string got = InNetns(ns, [] {
      UniqueFd fd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
      auto a = net::ResolveIpv4(fd.get(), "svc.test", {net::kVirtualDns1},
                                std::chrono::milliseconds(1000));
      return a ? net::FormatIpv4(a->front()) : a.error().ToString();
    });
    EXPECT_EQ(got, kInternet);
  }

  ASSERT_EQ(Cli({"start", "nt-b"}).exit_code, 0);
  ASSERT_EQ(Cli({"start", "nt-vault"}).exit_code, 0);
  // nt-b's declared firewall: DNS and svc.test:8080 (a name nt-fw resolves
  // on a worker after the link: the chain drops until then).
  EXPECT_EQ(Eventually("nt-b", kInternet, 8080), "192.0.2.2");
  EXPECT_EQ(From("nt-b", kInternet, 8081), "") << "not in nt-b's firewall";
  EXPECT_EQ(From("nt-a", kInternet, 8081), "192.0.2.2") << "nt-a's empty list accepts all";
  // Offline.
  EXPECT_EQ(From("nt-vault", kInternet, 8080), "");
  EXPECT_FALSE(HasEth0("nt-vault"));

  // Isolation: another client, the netvm's own services, the next netvm's.
  std::string b_ip = AddressOf("nt-b");
  std::string fw_ip = AddressOf("nt-fw");
  ASSERT_FALSE(b_ip.empty());
  ASSERT_FALSE(fw_ip.empty());
  servers_.push_back(Serve(NsOf("nt-b"), {9000}, 0));
  servers_.push_back(Serve(NsOf("nt-fw"), {9000}, 0));
  servers_.push_back(Serve(NsOf("nt-net"), {9000}, 0));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(From("nt-b", "127.0.0.1", 9000), "127.0.0.1") << "the servers listen";
  EXPECT_EQ(From("nt-fw", b_ip, 9000), "")
      << "a qube takes no new connections, not even from its netvm";
  EXPECT_EQ(From("nt-a", b_ip, 9000), "") << "client to client";
  EXPECT_EQ(From("nt-a", fw_ip, 9000), "") << "client to its netvm";
  EXPECT_EQ(From("nt-a", "192.0.2.2", 9000), "") << "client to the next netvm";
  // A spoofed source is dropped.
  {
    UniqueFd a_ns(::open(NsOf("nt-a").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(net::AddAddress(a_ns.get(), "eth0", *net::ParseIpv4("10.137.9.9"), 32));
    EXPECT_EQ(From("nt-a", kInternet, 8080, "10.137.9.9"), "");
    EXPECT_EQ(From("nt-a", kInternet, 8080), "192.0.2.2");
  }

  // Runtime rules: before the declared ones, numbered, removable, expiring.
  CliResult bad = Cli({"firewall", "nt-a", "add", "accept", "dsthost=10.0.0.1/8"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("dsthost"));
  CliResult add = Cli({"firewall", "nt-a", "add", "drop", "proto=tcp", "dstports=8080"});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  EXPECT_EQ(From("nt-a", kInternet, 8080), "");
  EXPECT_EQ(From("nt-a", kInternet, 8081), "192.0.2.2");
  CliResult listed = Cli({"firewall", "nt-a"});
  EXPECT_THAT(listed.out, HasSubstr("1  action=drop proto=tcp dstports=8080"));
  EXPECT_EQ(Cli({"firewall", "nt-a", "del", "2"}).exit_code, 1) << "there is one runtime rule";
  ASSERT_EQ(Cli({"firewall", "nt-a", "del", "1"}).exit_code, 0);
  EXPECT_EQ(From("nt-a", kInternet, 8080), "192.0.2.2");
  CliResult temp =
      Cli({"firewall", "nt-b", "add", "accept", "proto=tcp", "dstports=8081", "expire=+2"});
  ASSERT_EQ(temp.exit_code, 0) << temp.err;
  EXPECT_EQ(From("nt-b", kInternet, 8081), "192.0.2.2");
  std::this_thread::sleep_for(3500ms);
  EXPECT_EQ(From("nt-b", kInternet, 8081), "") << "the rule expired on its own";
  EXPECT_EQ(From("nt-b", kInternet, 8080), "192.0.2.2");

  // A resolver that does not answer holds up only the call that asked for
  // the name (on a worker): the daemon answers others meanwhile, and the
  // qube's chain fails closed until the rule goes.
  {
    std::atomic<bool> added{false};
    CliResult mute;
    std::thread adder([&] {
      mute = Cli({"firewall", "nt-b", "add", "accept", "dsthost=mute.test"});
      added = true;
    });
    std::this_thread::sleep_for(300ms);  // the add is in the daemon, asking
    CliResult ls = Cli({"ls"});
    const bool ls_first = !added.load();
    adder.join();
    EXPECT_EQ(ls.exit_code, 0) << ls.err;
    EXPECT_TRUE(ls_first) << "tessera ls waited for nt-b's resolver";
    ASSERT_EQ(mute.exit_code, 0) << mute.err;
    EXPECT_THAT(mute.out + mute.err, HasSubstr("mute.test")) << "reported as not resolved";
    EXPECT_EQ(From("nt-b", kInternet, 8080), "") << "an unresolved rule fails closed";
    json listed_b = json::parse(Cli({"firewall", "nt-b", "--json"}).out, nullptr, false);
    ASSERT_TRUE(listed_b.contains("runtime")) << listed_b.dump();
    int number = 0;
    for (size_t i = 0; i < listed_b["runtime"].size(); ++i) {
      if (listed_b["runtime"][i].value("dsthost", "") == "mute.test")
        number = static_cast<int>(i) + 1;
    }
    ASSERT_GT(number, 0) << listed_b.dump();
    ASSERT_EQ(Cli({"firewall", "nt-b", "del", std::to_string(number)}).exit_code, 0);
    EXPECT_EQ(From("nt-b", kInternet, 8080), "192.0.2.2");
  }

  // A netvm that stops takes its clients' links; started again, they are back.
  ASSERT_EQ(Cli({"stop", "nt-fw"}).exit_code, 0);
  EXPECT_FALSE(HasEth0("nt-a"));
  EXPECT_EQ(From("nt-a", kInternet, 8080), "");
  ASSERT_EQ(Cli({"start", "nt-fw"}).exit_code, 0);
  EXPECT_EQ(From("nt-a", kInternet, 8080), "192.0.2.2") << [&] {
    std::string out;
    for (const char* q : {"nt-a", "nt-fw", "nt-net"}) {
      out +=
          std::string("==== ") + q + "\n" +
          Capture("nsenter --net=" + NsOf(q) +
                  " sh -c 'ip addr; ip route; nft list ruleset; sysctl net.ipv4.ip_forward' 2>&1");
    }
    return out + AuditText();
  }();
  EXPECT_EQ(Eventually("nt-b", kInternet, 8080), "192.0.2.2");
  EXPECT_EQ(From("nt-b", kInternet, 8081), "") << "rules survive the netvm's restart";

  // A new netvm through apply: re-linked, not restarted. Runtime rules stay
  // (nt-b) unless the description says apply resets them (nt-a).
  auto runtime_dstports = [&](const std::string& qube) {
    json doc = json::parse(Cli({"firewall", qube, "--json"}).out, nullptr, false);
    std::vector<std::string> ports;
    for (const json& r : doc.value("runtime", json::array()))
      ports.push_back(r.value("dstports", ""));
    return ports;
  };
  ASSERT_EQ(Cli({"firewall", "nt-a", "add", "drop", "proto=udp", "dstports=9999"}).exit_code, 0);
  ASSERT_EQ(Cli({"firewall", "nt-b", "add", "drop", "proto=udp", "dstports=9999"}).exit_code, 0);
  EXPECT_THAT(runtime_dstports("nt-a"), Contains("9999"));
  int b_pid = PidOf("nt-b");
  WriteSystem("nt-net");
  CliResult applied = Cli({"apply", config_, "--yes"});
  ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
  EXPECT_THAT(runtime_dstports("nt-a"), Not(Contains("9999"))) << "reset on apply";
  EXPECT_THAT(runtime_dstports("nt-b"), Contains("9999")) << "kept";
  EXPECT_THAT(AuditText(), HasSubstr("\"action\":\"reset\""));
  EXPECT_EQ(PidOf("nt-b"), b_pid);
  auto linked = NetworkLines("nt-b", "linked");
  ASSERT_FALSE(linked.empty());
  EXPECT_EQ(linked.back().value("netvm", ""), "nt-net");
  EXPECT_EQ(Eventually("nt-b", kInternet, 8080), "192.0.2.2");
  EXPECT_EQ(From("nt-b", fw_ip, 9000), "") << "no longer nt-fw's client";

  // kill -9 and a new daemon: links and tables are made again.
  KillDaemon(SIGKILL);
  StartDaemon();
  EXPECT_EQ(From("nt-a", kInternet, 8080), "192.0.2.2");
  EXPECT_EQ(From("nt-b", kInternet, 8081), "");
  EXPECT_EQ(From("nt-a", b_ip, 9000), "");

  // A client that stops leaves no tracked connection in its netvm (its
  // address may be given to another qube).
  {
    const uint32_t a_ip = *net::ParseIpv4(AddressOf("nt-a"));
    UniqueFd fw_ns(::open(NsOf("nt-fw").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fw_ns);
    EXPECT_GE(*net::CountConnections(fw_ns.get(), a_ip), 1u) << "nt-a's connections are tracked";
    ASSERT_EQ(Cli({"stop", "nt-a"}).exit_code, 0);
    EXPECT_EQ(*net::CountConnections(fw_ns.get(), a_ip), 0u);
  }

  // A hostile netvm renames its uplink and names a device of its own like
  // it: only the device given goes back, under its own name (the record of
  // it survived the kill -9).
  std::string in_net = "nsenter --net=" + NsOf("nt-net") + " ip link ";
  ASSERT_TRUE(Sh(in_net + "set ntup0 down && " + in_net + "set ntup0 name real0 && " + in_net +
                 "add ntup0 type veth peer name fake1"));

  // Everything stopped: the uplink is back, the daemon's namespace as it was.
  ASSERT_EQ(Cli({"stop", "--all"}).exit_code, 0);
  EXPECT_TRUE(*net::LinkExists(host_fd_.get(), "ntup0"));
  EXPECT_EQ(Snapshot(host_), ns_before_);
  EXPECT_EQ(Snapshot(""), host_before_) << "the real host's network";
}

// The uplink by DHCP (udhcpc in nt-net, its events read by the daemon) and
// by host-nat (the daemon's namespace forwards and NATs nt-hn), through a
// kill -9 of the daemon; afterwards the daemon's namespace is as it was,
// ip_forward included.
TEST_F(NetworkTest, TheUplinkByDhcpAndByHostNat) {
  if (!Sh("busybox udhcpd --help >/dev/null 2>&1")) {
    GTEST_SKIP() << "needs busybox's udhcpd for the test internet's DHCP server";
  }
  ASSERT_TRUE(WriteFileAtomic(root_ + "/udhcpd.conf",
                              "start 192.0.2.100\nend 192.0.2.110\ninterface up1\n"
                              "lease_file " +
                                  root_ +
                                  "/udhcpd.leases\n"
                                  "pidfile " +
                                  root_ +
                                  "/udhcpd.pid\n"
                                  "option subnet 255.255.255.0\noption router 192.0.2.1\n"
                                  "option dns 192.0.2.1\n"));
  Spawn(inet_, {"busybox", "udhcpd", "-f", root_ + "/udhcpd.conf"});
  // The daemon's own way out, for host-nat: 198.51.100.2 via the internet.
  ASSERT_TRUE(net::CreateVeth(host_fd_.get(), "nthost0", inet_fd_.get(), "up2"));
  ASSERT_TRUE(net::AddAddress(inet_fd_.get(), "up2", *net::ParseIpv4("198.51.100.1"), 24));
  ASSERT_TRUE(net::SetLinkUp(inet_fd_.get(), "up2"));
  ASSERT_TRUE(net::SetNetSysctl(host_fd_.get(), "net/ipv6/conf/nthost0/disable_ipv6", "1"));
  ASSERT_TRUE(net::AddAddress(host_fd_.get(), "nthost0", *net::ParseIpv4("198.51.100.2"), 24));
  ASSERT_TRUE(net::SetLinkUp(host_fd_.get(), "nthost0"));
  ASSERT_TRUE(net::AddRoute(host_fd_.get(), 0, 0, *net::ParseIpv4("198.51.100.1"), "nthost0"));
  ns_before_ = Snapshot(host_);
  WriteSystem("", kUplinkSystem);
  StartDaemon();

  // DHCP: nt-a's traffic leaves NATed to the leased address; DNS goes to
  // the lease's resolver.
  ASSERT_EQ(Cli({"start", "nt-a"}).exit_code, 0);
  auto bound = NetworkLines("nt-net", "dhcp_bound");
  for (int i = 0; i < 100 && bound.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    bound = NetworkLines("nt-net", "dhcp_bound");
  }
  ASSERT_FALSE(bound.empty()) << AuditText();
  const std::string lease = bound.back().value("address", "");
  ASSERT_THAT(lease, MatchesRegex("192\\.0\\.2\\.1[01][0-9]/24"));
  const std::string leased = lease.substr(0, lease.find('/'));
  EXPECT_EQ(Eventually("nt-a", kInternet, 8080), leased) << AuditText();
  EXPECT_EQ(bound.back().value("router", ""), "192.0.2.1");
  EXPECT_EQ(bound.back()["dns"], json::array({"192.0.2.1"}));
  auto resolve_in = [&](const std::string& qube) {
    return InNetns(NsOf(qube), [] {
      UniqueFd fd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
      auto a = net::ResolveIpv4(fd.get(), "svc.test", {net::kVirtualDns1},
                                std::chrono::milliseconds(1000));
      return a ? net::FormatIpv4(a->front()) : a.error().ToString();
    });
  };
  EXPECT_EQ(resolve_in("nt-a"), kInternet);

  // host-nat: nt-b through nt-hn and the daemon's namespace, NATed twice.
  servers_.push_back(Serve(host_, {9001}, 0));
  ASSERT_EQ(Cli({"start", "nt-b"}).exit_code, 0);
  EXPECT_EQ(Eventually("nt-b", kInternet, 8080), "198.51.100.2") << AuditText();
  EXPECT_EQ(resolve_in("nt-b"), kInternet);
  EXPECT_EQ(Capture("ip netns exec " + host_ + " cat /proc/sys/net/ipv4/ip_forward"), "1\n");
  // The host is not the netvm's, nor its clients', to reach.
  EXPECT_EQ(From("nt-hn", "10.139.2.1", 9001), "");
  EXPECT_EQ(From("nt-hn", "198.51.100.2", 9001), "");
  EXPECT_EQ(From("nt-b", "198.51.100.2", 9001), "");
  EXPECT_EQ(InNetns(NsFile(host_), [] { return Tcp("127.0.0.1", 9001); }), "127.0.0.1")
      << "the host's server listens";

  // kill -9 and a new daemon: the lease and the host-nat link are kept.
  KillDaemon(SIGKILL);
  StartDaemon();
  EXPECT_EQ(Eventually("nt-a", kInternet, 8081), leased) << "the same lease, asked for again";
  {
    UniqueFd ns(::open(NsOf("nt-net").c_str(), O_RDONLY | O_CLOEXEC));
    auto held = net::ListAddresses(ns.get(), "ntup0");
    ASSERT_TRUE(held);
    EXPECT_EQ(held->size(), 1u) << "no address of an earlier lease stays";
  }
  EXPECT_EQ(Eventually("nt-b", kInternet, 8081), "198.51.100.2");
  EXPECT_EQ(From("nt-hn", "10.139.2.1", 9001), "");

  // Stopped: the interface is back without its lease, the host's NAT and
  // forwarding are gone.
  ASSERT_EQ(Cli({"stop", "--all"}).exit_code, 0);
  EXPECT_TRUE(*net::LinkExists(host_fd_.get(), "ntup0"));
  EXPECT_EQ(Snapshot(host_), ns_before_);
  EXPECT_EQ(Snapshot(""), host_before_) << "the real host's network";
}

// qubes.UpdatesProxy: a template (no netvm) fetches over HTTP through the
// proxy in nt-net; an app qube can neither reach a forwarder nor, running
// one itself, get past the policy.
TEST_F(NetworkTest, TemplatesUpdateThroughTheProxyAndOnlyThey) {
  servers_.push_back(ServeHttp(inet_, 80));
  StartDaemon();
  ASSERT_EQ(Cli({"start", "nt-net"}).exit_code, 0);
  ASSERT_EQ(Cli({"start", "nt-base"}).exit_code, 0);
  // A proxy request as apt sends one (busybox nc: Debian's static busybox
  // wget crashes before it connects); the answer's body after the head.
  auto fetch = [&](const std::string& qube, const std::string& port, const std::string& url) {
    CliResult r =
        Cli({"run", qube, "--", "/bin/sh", "-c",
             "printf 'GET " + url + " HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc 127.0.0.1 " + port});
    size_t body = r.out.find("\r\n\r\n");
    if (r.out.rfind("HTTP/1.0 200", 0) != 0 || body == std::string::npos) {
      r.exit_code = r.exit_code == 0 ? 1 : r.exit_code;
    } else {
      r.out = r.out.substr(body + 4);
    }
    return r;
  };
  // The forwarder is started by the daemon, detached: wait until it listens.
  CliResult got;
  for (int i = 0; i < 50; ++i) {
    got = fetch("nt-base", "8082", "http://192.0.2.1/index");
    if (got.exit_code == 0) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, "192.0.2.2") << "fetched by nt-net's proxy, from its uplink";
  CliResult by_name = fetch("nt-base", "8082", "http://svc.test/index");
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(by_name.out, "192.0.2.2") << "the name resolved by nt-net's resolver";
  CliResult refused = fetch("nt-base", "8082", "ftp://192.0.2.1/");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.out, HasSubstr("400 Bad Request"));
  CliResult tunnel =
      Cli({"run", "nt-base", "--", "/bin/sh", "-c",
           "printf 'CONNECT 192.0.2.1:8090 HTTP/1.1\\r\\n\\r\\n' | nc 127.0.0.1 8082"});
  EXPECT_THAT(tunnel.out, HasSubstr("403 Forbidden")) << "CONNECT only to port 443";
  // The template itself is offline.
  EXPECT_EQ(From("nt-base", kInternet, 80), "");
  CliResult port = fetch("nt-base", "8082", "http://192.0.2.1:8080/");
  EXPECT_THAT(port.out, HasSubstr("403 Forbidden")) << "plain HTTP only to port 80";
  CliResult local = fetch("nt-base", "8082", "http://127.0.0.1/");
  EXPECT_THAT(local.out, HasSubstr("may not reach")) << "not the netvm's own services";

  // An app qube: no forwarder, and its own one is refused by the policy.
  ASSERT_EQ(Cli({"start", "nt-vault"}).exit_code, 0);
  EXPECT_NE(fetch("nt-vault", "8082", "http://192.0.2.1/").exit_code, 0);
  ASSERT_EQ(Cli({"run", "--detach", "nt-vault", "--", "tessera-updates-proxy", "forward", "--port",
                 "8083"})
                .exit_code,
            0);
  std::this_thread::sleep_for(300ms);
  CliResult app = fetch("nt-vault", "8083", "http://192.0.2.1/");
  EXPECT_NE(app.exit_code, 0) << app.out;
  auto calls = CallLines("qubes.UpdatesProxy");
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back().value("source", ""), "nt-vault");
  EXPECT_EQ(calls.back().value("decision", ""), "deny") << calls.back().dump();
  EXPECT_EQ(calls.front().value("source", ""), "nt-base");
  EXPECT_EQ(calls.front().value("target", ""), "nt-net") << calls.front().dump();
}

}  // namespace
}  // namespace tessera::daemon_testing
