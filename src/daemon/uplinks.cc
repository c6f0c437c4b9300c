#include "daemon/uplinks.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "daemon/run_command.h"
#include "net/host_nat.h"
#include "net/links.h"
#include "net/nft.h"
#include "net/ruleset.h"
#include "wire/frame.h"

namespace tessera::daemon {

using nlohmann::json;

namespace {

constexpr const char* kDhcpHook = "/run/tessera/tools/bin/tessera-dhcp-hook";
constexpr std::chrono::seconds kDhcpRestart{5};
constexpr const char* kForwardSysctl = "net/ipv4/ip_forward";

std::string Cidr(uint32_t address, int prefix) {
  return net::FormatIpv4(address) + "/" + std::to_string(prefix);
}

// A namespace's identity while it lives (its nsfs inode).
uint64_t NamespaceId(int netns_fd) {
  struct stat st {};
  return ::fstat(netns_fd, &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

json Addresses(const std::vector<uint32_t>& list) {
  json out = json::array();
  for (uint32_t a : list) out.push_back(net::FormatIpv4(a));
  return out;
}

}  // namespace

// What a DHCP client run shares with its caller: whether it is still
// wanted, and how to hang it up.
struct Uplinks::DhcpClient {
  bool wanted = true;
  AdminServer::StreamHandler* handler = nullptr;  // null once the run is gone
};

// The caller of a netvm's udhcpc run: reads the hook's lines from its
// stdout, gives the credit back, and hears how it ended.
class Uplinks::DhcpCaller : public RunCaller {
 public:
  DhcpCaller(Uplinks& owner, std::shared_ptr<bool> alive, std::string netvm,
             std::shared_ptr<DhcpClient> client)
      : owner_(owner),
        alive_(std::move(alive)),
        netvm_(std::move(netvm)),
        client_(std::move(client)) {}
  ~DhcpCaller() override { client_->handler = nullptr; }

  void Attach(AdminServer::StreamHandler* handler) override {
    client_->handler = handler;
    if (!client_->wanted) Close();
  }
  void Send(wire::FrameType type, uint8_t stream, std::string_view payload) override {
    if (type != wire::FrameType::kData) return;
    Credit(stream, payload.size());
    if (stream != wire::kStdout) return;  // udhcpc's own messages
    buffer_.append(payload);
    size_t end;
    while ((end = buffer_.find('\n')) != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      if (*alive_ && client_->wanted) owner_.OnDhcpLine(netvm_, line);
    }
    if (buffer_.size() > net::kMaxDhcpEventLine) buffer_.clear();  // no line ends: junk
  }
  void Reply(ApiResult<json> result) override {
    if (!*alive_ || !client_->wanted) return;
    std::string why = result ? "exited with " + std::to_string(result->value("exit_code", -1))
                             : result.error().message;
    owner_.OnDhcpEnded(netvm_, client_.get(), why);
  }

 private:
  void Credit(uint8_t stream, size_t bytes) {
    if (client_->handler == nullptr || bytes == 0) return;
    wire::Frame credit;
    credit.type = wire::FrameType::kCredit;
    credit.stream = stream;
    credit.payload = wire::EncodeU32(static_cast<uint32_t>(bytes));
    client_->handler->OnClientFrame(credit);
  }
  void Close() {
    if (client_->handler == nullptr) return;
    wire::Frame close;
    close.type = wire::FrameType::kClose;
    client_->handler->OnClientFrame(close);
  }

  Uplinks& owner_;
  std::shared_ptr<bool> alive_;
  std::string netvm_;
  std::shared_ptr<DhcpClient> client_;
  std::string buffer_;
};

Uplinks::Uplinks(EventLoop& loop, AuditLog& audit, std::string net_dir, Changed changed,
                 Reporter report)
    : loop_(loop),
      audit_(audit),
      net_dir_(std::move(net_dir)),
      changed_(std::move(changed)),
      report_(std::move(report)),
      host_netns_(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) {
  // What an earlier daemon gave (it may have been killed).
  auto text = ReadFile(net_dir_ + "/uplinks.json", 1 << 20);
  if (!text) return;
  json saved = json::parse(*text, nullptr, false);
  if (!saved.is_object()) return;
  for (const auto& [netvm, entry] : saved.items()) {
    if (!entry.is_object()) continue;
    Given given;
    given.identity.name = entry.value("name", "");
    given.identity.index = entry.value("index", 0);
    given.identity.kind = entry.value("kind", "");
    given.identity.mac = entry.value("mac", "");
    given.netns = entry.value("netns", uint64_t{0});
    if (given.identity.index > 0 && !given.identity.name.empty()) given_[netvm] = given;
  }
}

Uplinks::~Uplinks() {
  *alive_ = false;
  for (auto& [netvm, held] : held_) {
    if (held.client) held.client->wanted = false;
  }
}

void Uplinks::SetRunner(RunCommands* runs) {
  runs_ = runs;
  if (runs_ == nullptr) {
    for (auto& [netvm, held] : held_) {
      if (held.client) held.client->wanted = false;  // its runs end with the runner
      held.client.reset();
      held.retry.Reset();
    }
    return;
  }
  for (auto& [netvm, held] : held_) {
    if (held.kind == Kind::kDhcp && !held.client) StartDhcp(netvm);
  }
}

std::string Uplinks::Interface(const config::Qube& cfg) {
  return cfg.uplink == config::kHostNat ? net::kHostNatNetvmIfname : cfg.uplink;
}

Status Uplinks::Take(const std::string& netvm, int netns_fd, const config::Qube& cfg,
                     const net::Ipv4Net& qubes_range) {
  if (held_.count(netvm) != 0) return Ok();
  if (!host_netns_) return Err("the daemon's own network namespace is not open");
  Held held;
  held.ifname = Interface(cfg);
  held.qubes_range = qubes_range;
  held.netns = UniqueFd(::fcntl(netns_fd, F_DUPFD_CLOEXEC, 0));
  if (!held.netns) return Err(Error::FromErrno("copy the netvm's namespace descriptor"));
  json record{{"kind", "network"}, {"qube", netvm}, {"action", "uplink"}};
  if (cfg.uplink == config::kHostNat) {
    held.kind = Kind::kHostNat;
    if (Status taken = TakeHostNat(netvm, netns_fd, held); !taken) {
      // Nothing half-made stays on the host: the link, and the NAT table
      // and forwarding if no other host-nat netvm needs them.
      if (!held.host_ifname.empty()) (void)net::DeleteLink(host_netns_.get(), held.host_ifname);
      DisableHostNatIfUnused();
      return taken;
    }
    record["interface"] = held.host_ifname;
    record["mode"] = "host-nat";
  } else {
    TRY(TakeInterface(netvm, netns_fd, cfg, held));
    held.kind = cfg.uplink_address.empty() ? Kind::kDhcp : Kind::kStatic;
    record["interface"] = cfg.uplink;
    record["mode"] = held.kind == Kind::kDhcp ? "dhcp" : "static";
    if (held.kind == Kind::kStatic) record["address"] = cfg.uplink_address;
  }
  // Only once set up: a half-done one is tried again.
  held_.emplace(netvm, std::move(held));
  audit_.Write(std::move(record));
  if (held_.at(netvm).kind == Kind::kDhcp) StartDhcp(netvm);
  return Ok();
}

Status Uplinks::TakeInterface(const std::string& netvm, int netns_fd, const config::Qube& cfg,
                              Held& held) {
  net::Netlink inside = TRY(net::Netlink::In(netns_fd));
  const uint64_t ns_id = NamespaceId(netns_fd);
  std::optional<net::LinkIdentity> mine;
  // After a daemon restart the netvm may hold it already: the device it was
  // given, found by index whatever its name now, or none at all.
  if (auto given = given_.find(netvm); given != given_.end()) {
    auto now = TRY(inside.Identify(given->second.identity.index));
    bool same =
        now && now->kind == given->second.identity.kind && now->mac == given->second.identity.mac;
    if (given->second.netns == ns_id && !same) {
      return Err("the uplink device given to " + netvm + " (" + given->second.identity.name +
                 ") is no longer there as it was (index, kind or MAC changed): not trusted");
    }
    if (same && given->second.netns == ns_id) mine = now;
    if (!mine) given_.erase(given);  // an earlier run of the netvm
  }
  if (!mine) {
    net::Netlink host = TRY(net::Netlink::In(host_netns_.get()));
    bool present = TRY(host.LinkExists(cfg.uplink));
    if (auto there = TRY(inside.Identify(cfg.uplink))) {
      // Left by a daemon whose record was lost, unless the host's is still
      // here: then the netvm made one of that name itself.
      if (present) {
        return Err("the netvm has an interface named " + cfg.uplink +
                   " already while the host's is still here: not taken");
      }
      mine = there;
    } else {
      if (!present) return Err("host interface " + cfg.uplink + " does not exist");
      TRY(net::RunNft(netns_fd, net::RenderQubeInputTable()));  // before the uplink is in it
      TRY(host.MoveLink(cfg.uplink, netns_fd));
      mine = TRY(inside.Identify(cfg.uplink));
      if (!mine) return Err("host interface " + cfg.uplink + " vanished as it was moved");
    }
    mine->name = cfg.uplink;  // its name on the host
    given_[netvm] = Given{*mine, ns_id};
    SaveGiven();
  }
  held.identity = *mine;
  auto now = TRY(inside.Identify(mine->index));
  if (!now) return Err("the uplink " + mine->name + " vanished from the netvm");
  held.ifname = now->name;  // what the netvm calls it now
  TRY(inside.SetLinkUp(held.ifname));
  if (cfg.uplink_address.empty()) return Ok();  // DHCP sets the rest
  auto slash = cfg.uplink_address.find('/');
  uint32_t address = TRY(net::ParseIpv4(cfg.uplink_address.substr(0, slash)));
  int prefix = std::stoi(cfg.uplink_address.substr(slash + 1));
  TRY(inside.AddAddress(held.ifname, address, prefix));
  if (!cfg.uplink_gateway.empty()) {
    uint32_t gateway = TRY(net::ParseIpv4(cfg.uplink_gateway));
    TRY(inside.AddRoute(0, 0, gateway, held.ifname));
  }
  return Ok();
}

void Uplinks::SaveGiven() {
  json out = json::object();
  for (const auto& [netvm, given] : given_) {
    out[netvm] = {{"name", given.identity.name},
                  {"index", given.identity.index},
                  {"kind", given.identity.kind},
                  {"mac", given.identity.mac},
                  {"netns", given.netns}};
  }
  if (Status saved = WriteFileAtomic(net_dir_ + "/uplinks.json", out.dump(2) + "\n", 0600);
      !saved) {
    report_("", "uplink", "cannot record the uplinks given: " + saved.error().ToString());
  }
}

Status Uplinks::TakeHostNat(const std::string& netvm, int netns_fd, Held& held) {
  if (!host_nat_book_) {
    host_nat_book_ = TRY(net::AddressBook::Load(net_dir_ + "/host-nat.json", net::kHostNatRange));
  }
  const uint32_t address = TRY(host_nat_book_->AddressOf(netvm));
  TRY(host_nat_book_->Save());
  held.host_ifname = net::HostNatIfname(address);
  net::Netlink host = TRY(net::Netlink::In(host_netns_.get()));
  net::Netlink inside = TRY(net::Netlink::In(netns_fd));
  // Both ends there: a killed daemon's link, kept. Anything less is made anew.
  bool host_end = TRY(host.LinkExists(held.host_ifname));
  bool netvm_end = TRY(inside.LinkExists(held.ifname));
  if (!host_end || !netvm_end) {
    TRY(host.DeleteLink(held.host_ifname));
    TRY(inside.DeleteLink(held.ifname));
    TRY(net::RunNft(netns_fd, net::RenderQubeInputTable()));
    TRY(host.CreateVeth(held.host_ifname, netns_fd, held.ifname));
  }
  // The host's rules before its forwarding.
  TRY(EnableHostNat());
  TRY(host.AddAddress(held.host_ifname, net::kHostNatGateway, 32));
  TRY(host.SetLinkUp(held.host_ifname));
  TRY(host.AddRoute(address, 32, std::nullopt, held.host_ifname));
  TRY(inside.AddAddress(held.ifname, address, 32));
  TRY(inside.SetLinkUp(held.ifname));
  TRY(inside.AddRoute(net::kHostNatGateway, 32, std::nullopt, held.ifname));
  TRY(inside.AddRoute(0, 0, net::kHostNatGateway, held.ifname));
  if (auto conf = ReadFile("/etc/resolv.conf", 1 << 16)) held.host_dns = net::NameserversOf(*conf);
  if (held.host_dns.empty()) {
    report_(netvm, "uplink",
            "host-nat: the host's /etc/resolv.conf names no resolver a qube can reach (only "
            "loopback ones, or none); set uplink_dns");
  }
  return Ok();
}

void Uplinks::Return(const std::string& netvm) {
  auto it = held_.find(netvm);
  if (it == held_.end()) return;
  Held held = std::move(it->second);
  held_.erase(it);
  if (held.client) {
    held.client->wanted = false;
    if (held.client->handler != nullptr) {
      wire::Frame close;
      close.type = wire::FrameType::kClose;
      held.client->handler->OnClientFrame(close);
    }
  }
  if (held.kind == Kind::kHostNat) {
    // Deleting the host's end deletes the pair.
    if (Status gone = net::DeleteLink(host_netns_.get(), held.host_ifname); !gone) {
      report_(netvm, "uplink",
              "cannot delete " + held.host_ifname + ": " + gone.error().ToString());
    }
    DisableHostNatIfUnused();
  } else {
    // A host interface goes back before the namespace dies: a virtual one
    // would die with it. Only the device given, found by index (a netvm may
    // rename it, or name another like it), under its own name.
    given_.erase(netvm);
    SaveGiven();
    Status back = [&]() -> Status {
      net::Netlink inside = TRY(net::Netlink::In(held.netns.get()));
      auto now = TRY(inside.Identify(held.identity.index));
      if (!now || now->kind != held.identity.kind || now->mac != held.identity.mac) {
        return Err("it is no longer the device given (index, kind or MAC changed); left in " +
                   netvm);
      }
      (void)inside.FlushAddresses(now->name);
      (void)inside.SetLinkUp(now->name, false);
      return inside.MoveLink(now->name, host_netns_.get(), held.identity.name);
    }();
    if (!back) {
      report_(netvm, "uplink",
              "cannot give " + held.identity.name + " back: " + back.error().ToString());
      return;
    }
  }
  audit_.Write(
      {{"kind", "network"},
       {"qube", netvm},
       {"action", "uplink_returned"},
       {"interface", held.kind == Kind::kHostNat ? held.host_ifname : held.identity.name}});
}

std::vector<uint32_t> Uplinks::Resolvers(const std::string& netvm, const config::Qube& cfg) const {
  std::vector<uint32_t> out;
  for (const auto& text : cfg.uplink_dns) {
    if (auto a = net::ParseIpv4(text)) out.push_back(*a);
  }
  if (!out.empty()) return out;
  auto it = held_.find(netvm);
  if (it == held_.end()) return out;
  if (it->second.lease) return it->second.lease->dns;
  return it->second.host_dns;
}

std::optional<net::DhcpLease> Uplinks::Lease(const std::string& netvm) const {
  auto it = held_.find(netvm);
  return it == held_.end() ? std::nullopt : it->second.lease;
}

// ---------------------------------------------------------------------------
// DHCP

void Uplinks::StartDhcp(const std::string& netvm) {
  auto it = held_.find(netvm);
  if (it == held_.end() || runs_ == nullptr) return;
  Held& held = it->second;
  held.retry.Reset();
  held.client = std::make_shared<DhcpClient>();
  RunRequest run;
  run.qube = netvm;
  run.relay = true;
  // In the foreground, forever (it retries on its own); its script prints
  // each event for OnDhcpLine.
  run.open.argv = {"udhcpc", "-f", "-i", held.ifname, "-s", kDhcpHook};
  // An address the link holds (a daemon restarted under a lease) is asked
  // for again, so the qubes behind keep their connections.
  if (auto addresses = net::ListAddresses(held.netns.get(), held.ifname);
      addresses && addresses->size() == 1) {
    run.open.argv.push_back("-r");
    run.open.argv.push_back(net::FormatIpv4(addresses->front().first));
  }
  run.open.user = "root";
  runs_->Start(std::make_unique<DhcpCaller>(*this, alive_, netvm, held.client), std::move(run));
}

void Uplinks::OnDhcpLine(const std::string& netvm, const std::string& line) {
  auto it = held_.find(netvm);
  if (it == held_.end()) return;
  Held& held = it->second;
  auto event = net::ParseDhcpEvent(line);
  if (!event) {
    report_(netvm, "dhcp", "the DHCP client sent " + event.error().message());
    return;
  }
  const std::vector<uint32_t> dns_before = held.lease ? held.lease->dns : std::vector<uint32_t>{};
  if (event->lease) {
    if (held.qubes_range.Contains(event->lease->address) ||
        (event->lease->router && held.qubes_range.Contains(*event->lease->router))) {
      report_(netvm, "dhcp",
              "the lease " + net::FormatIpv4(event->lease->address) + " is inside network_range " +
                  held.qubes_range.ToString() + ": not used");
      return;
    }
    if (Status applied = ApplyLease(held, *event->lease); !applied) {
      report_(netvm, "dhcp", applied.error().ToString());
      return;
    }
    audit_.Write({{"kind", "network"},
                  {"qube", netvm},
                  {"action", "dhcp_" + event->event},
                  {"interface", held.ifname},
                  {"address", Cidr(event->lease->address, event->lease->prefix)},
                  {"router", event->lease->router ? json(net::FormatIpv4(*event->lease->router))
                                                  : json(nullptr)},
                  {"dns", Addresses(event->lease->dns)}});
  } else if (event->event == "deconfig" || event->event == "nak") {
    if (held.lease) {
      (void)net::FlushAddresses(held.netns.get(), held.ifname);
      held.lease.reset();
      audit_.Write({{"kind", "network"},
                    {"qube", netvm},
                    {"action", "dhcp_" + event->event},
                    {"interface", held.ifname}});
    }
  }
  const std::vector<uint32_t> dns_after = held.lease ? held.lease->dns : std::vector<uint32_t>{};
  if (dns_after != dns_before) changed_(netvm);
}

Status Uplinks::ApplyLease(Held& held, const net::DhcpLease& lease) {
  const int ns = held.netns.get();
  // Only the lease's address: one of an earlier lease goes (with its routes).
  auto addresses = TRY(net::ListAddresses(ns, held.ifname));
  for (const auto& [address, prefix] : addresses) {
    if (address != lease.address || prefix != lease.prefix) {
      TRY(net::FlushAddresses(ns, held.ifname));
      break;
    }
  }
  held.lease.reset();  // a failure below leaves none known
  TRY(net::AddAddress(ns, held.ifname, lease.address, lease.prefix));
  if (lease.router) TRY(net::AddRoute(ns, 0, 0, *lease.router, held.ifname));
  held.lease = lease;
  return Ok();
}

void Uplinks::OnDhcpEnded(const std::string& netvm, const DhcpClient* client,
                          const std::string& why) {
  auto it = held_.find(netvm);
  if (it == held_.end() || it->second.client.get() != client) return;
  Held& held = it->second;
  held.client.reset();
  report_(netvm, "dhcp",
          "the DHCP client (udhcpc, from the netvm's template) ended: " + why +
              "; started again in " + std::to_string(kDhcpRestart.count()) + " s");
  held.retry = loop_.After(kDhcpRestart, [this, netvm] { StartDhcp(netvm); });
}

// ---------------------------------------------------------------------------
// The host's side of host-nat

Status Uplinks::EnableHostNat() {
  TRY(net::RunNft(host_netns_.get(), net::RenderHostNatTable()));
  // What forwarding was before the first host-nat link, to put it back.
  const std::string saved = net_dir_ + "/host-forward";
  std::string now = TRY(ReadFile("/proc/sys/" + std::string(kForwardSysctl), 16));
  if (::access(saved.c_str(), F_OK) != 0) {
    TRY(WriteFileAtomic(saved, now, 0600));
  }
  if (now.rfind('1', 0) != 0) TRY(net::SetNetSysctl(host_netns_.get(), kForwardSysctl, "1"));
  return Ok();
}

void Uplinks::DisableHostNatIfUnused() {
  for (const auto& [netvm, held] : held_) {
    if (held.kind == Kind::kHostNat) return;
  }
  const std::string saved = net_dir_ + "/host-forward";
  auto before = ReadFile(saved, 16);
  if (!before) return;  // never enabled (or already put back)
  if (auto removed = net::RunNft(host_netns_.get(), net::RemoveHostNatTable()); !removed) {
    report_("", "host-nat", "cannot remove the host's NAT table: " + removed.error().ToString());
    return;
  }
  std::string value = before->rfind('1', 0) == 0 ? "1" : "0";
  if (Status put = net::SetNetSysctl(host_netns_.get(), kForwardSysctl, value); !put) {
    report_("", "host-nat", "cannot put ip_forward back: " + put.error().ToString());
    return;
  }
  ::unlink(saved.c_str());
}

void Uplinks::Settle() { DisableHostNatIfUnused(); }

}  // namespace tessera::daemon
