#include "daemon/network.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <ctime>

#include "common/fs.h"
#include "common/log.h"
#include "config/rule_json.h"
#include "net/conntrack.h"
#include "net/firewall.h"
#include "net/links.h"
#include "net/nft.h"
#include "net/resolve.h"
#include "net/ruleset.h"
#include "wire/admin_protocol.h"

namespace tessera::daemon {

using nlohmann::json;
namespace codes = wire::codes;

namespace {

constexpr const char* kQubeIfname = "eth0";
constexpr std::chrono::milliseconds kResolveTimeout{1000};
constexpr std::chrono::seconds kResolveRetry{30};

int64_t Now() { return static_cast<int64_t>(::time(nullptr)); }

}  // namespace

Network::Network(EventLoop& loop, WorkerPool& pool, const QubeManager& manager,
                 const ConfigStore& config, AuditLog& audit, EventBus& events,
                 std::string state_dir)
    : loop_(loop),
      manager_(manager),
      config_(config),
      audit_(audit),
      events_(events),
      net_dir_(std::move(state_dir) + "/net"),
      uplinks_(
          loop, audit, net_dir_,
          [this](const std::string& netvm) {
            if (Status applied = ApplyRules(netvm); !applied) {
              Report(netvm, "rules", applied.error().ToString());
            }
          },
          [this](const std::string& qube, const std::string& action, const std::string& error) {
            Report(qube, action, error);
          }),
      pool_(pool) {
  if (Status made = MakeDirs(net_dir_ + "/firewall", 0700); !made) {
    Log(LogLevel::kError, "cannot make the network state directory",
        {{"error", made.error().ToString()}});
  }
}

Network::~Network() = default;

// ---------------------------------------------------------------------------
// Lifecycle

void Network::OnRunning(const std::string& qube, backend::Instance& instance) {
  auto netns = instance.OpenNetworkNamespace();
  if (!netns) {
    // A backend without a namespace to offer (a VM) is wired by TAP later.
    if (netns.error().errno_value() != ENOTSUP) Report(qube, "namespace", netns.error().ToString());
    return;
  }
  netns_[qube] = std::move(*netns);
  Reconcile();
}

void Network::OnStopping(const std::string& qube) {
  // A host interface goes back before the namespace dies: a virtual one
  // would die with it.
  uplinks_.Return(qube);
}

void Network::OnStopped(const std::string& qube) {
  uplinks_.Return(qube);
  if (netns_.erase(qube) != 0 || links_.count(qube) != 0) {
    applied_.erase(qube);
    forwarding_.erase(qube);
    Reconcile();
  }
  // A disposable's runtime rules and address end with it: its name is
  // given out again.
  if (config_.system().Find(qube) == nullptr) {
    (void)SaveRuntimeRules(qube, {});
    if (book_ && links_.count(qube) == 0) {
      book_->Release(qube);
      (void)book_->Save();
    }
  }
}

void Network::OnSystemAdopted() {
  // Runtime rules go on apply where the description says so
  // (`firewall_runtime = "reset-on-apply"`); the tables follow below.
  for (const config::Qube& q : config_.system().qubes) {
    if (!q.reset_runtime_firewall) continue;
    auto runtime = RuntimeRules(q.name);
    if (!runtime || runtime->empty()) continue;
    if (Status cleared = SaveRuntimeRules(q.name, {}); !cleared) {
      Report(q.name, "firewall", "runtime rules not reset: " + cleared.error().ToString());
      continue;
    }
    audit_.Write({{"kind", "firewall"},
                  {"qube", q.name},
                  {"action", "reset"},
                  {"reason", "apply"},
                  {"rules", runtime->size()}});
    events_.Emit({{"event", "firewall"}, {"qube", q.name}});
  }
  Reconcile();
  Sweep();
}

void Network::AfterRecovery() {
  Reconcile();
  Sweep();
  uplinks_.Settle();
}

// ---------------------------------------------------------------------------
// Bringing links and tables in line with the description

const config::Qube* Network::ConfigOf(const std::string& qube) const {
  const config::System& system = config_.system();
  if (const config::Qube* q = system.Find(qube)) return q;
  const QubeRecord* record = manager_.Record(qube);
  if (record != nullptr && !record->dvm_template.empty()) return system.Find(record->dvm_template);
  return nullptr;
}

std::optional<std::string> Network::WantedNetvm(const std::string& qube) const {
  const config::Qube* q = ConfigOf(qube);
  return q == nullptr ? std::nullopt : q->netvm;
}

void Network::Reconcile() {
  if (reconciling_) {
    pending_ = true;  // run again when the current pass ends
    return;
  }
  do {
    pending_ = false;
    reconciling_ = true;
    struct Done {
      bool& flag;
      ~Done() { flag = false; }
    } done{reconciling_};
    ReconcileOnce();
  } while (pending_);
}

void Network::ReconcileOnce() {
  const config::System& system = config_.system();
  auto range = net::Ipv4Net::Parse(system.network_range);
  if (!range) {
    Report("", "range", range.error().ToString());
    return;
  }
  if (!book_ || !(book_->range() == *range)) {
    // A new range re-addresses every link.
    std::vector<std::string> clients;
    for (const auto& [client, link] : links_) clients.push_back(client);
    for (const auto& client : clients) (void)Unlink(client);
    auto book = net::AddressBook::Load(net_dir_ + "/addresses.json", *range);
    if (!book) {
      Report("", "addresses", book.error().ToString());
      return;
    }
    book_ = std::move(*book);
    applied_.clear();
  }

  // Links that are no longer wanted (or whose ends changed) go.
  std::vector<std::string> stale;
  for (const auto& [client, link] : links_) {
    std::optional<std::string> wanted = IsRunning(client) ? WantedNetvm(client) : std::nullopt;
    auto address = book_->AddressOf(client);
    auto gateway = book_->AddressOf(link.netvm);
    if (!wanted || *wanted != link.netvm || !IsRunning(link.netvm) || !address || !gateway ||
        *address != link.address || *gateway != link.gateway) {
      stale.push_back(client);
    }
  }
  for (const auto& client : stale) {
    if (Status gone = Unlink(client); !gone) Report(client, "unlink", gone.error().ToString());
  }

  // Every running netvm has its table (before any forwarding) and uplink.
  for (const auto& [qube, fd] : netns_) {
    const config::Qube* q = ConfigOf(qube);
    if (q == nullptr || !q->provides_network) continue;
    if (Status applied = ApplyRules(qube); !applied) {
      Report(qube, "rules", applied.error().ToString());
      continue;  // no forwarding without its rules
    }
    if (!q->uplink.empty() && !uplinks_.Holds(qube)) {
      if (Status taken = uplinks_.Take(qube, fd.get(), *q, book_->range()); !taken) {
        Report(qube, "uplink", taken.error().ToString());
      }
    }
    if (forwarding_.count(qube) == 0) {
      if (Status forward = net::SetNetSysctl(fd.get(), "net/ipv4/ip_forward", "1"); !forward) {
        Report(qube, "forwarding", forward.error().ToString());
      } else {
        forwarding_.insert(qube);
      }
    }
  }

  // Running clients of running netvms are linked, nearest the uplink first:
  // a netvm's own link (and its resolver) is there before its clients'.
  std::vector<std::pair<int, std::string>> order;
  for (const auto& [qube, fd] : netns_) {
    int depth = 0;
    for (auto hop = WantedNetvm(qube); hop && depth < 64; hop = WantedNetvm(*hop)) ++depth;
    order.emplace_back(depth, qube);
  }
  std::sort(order.begin(), order.end());
  for (const auto& [depth, qube] : order) {
    std::optional<std::string> netvm = WantedNetvm(qube);
    if (!netvm || !IsRunning(*netvm) || links_.count(qube) != 0) continue;
    if (Status linked = LinkClient(qube, *netvm); !linked) {
      Report(qube, "link", linked.error().ToString());
    } else {
      audit_.Write({{"kind", "network"},
                    {"qube", qube},
                    {"action", "linked"},
                    {"netvm", *netvm},
                    {"address", net::FormatIpv4(links_[qube].address)}});
    }
  }

  // Tables follow their client sets (and expired rules).
  for (const auto& [qube, fd] : netns_) {
    const config::Qube* q = ConfigOf(qube);
    if (q == nullptr || !q->provides_network) continue;
    if (Status applied = ApplyRules(qube); !applied)
      Report(qube, "rules", applied.error().ToString());
  }

  // Names that did not resolve are tried again (their chain drops meanwhile),
  // at most every kResolveRetry.
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::string> retry;
  for (const auto& [client, link] : links_) {
    if (Unresolved(client) && resolving_.count(client) == 0 &&
        now - resolve_tried_[client] >= kResolveRetry) {
      retry.push_back(client);
    }
  }
  for (const auto& client : retry) {
    Resolve(client, [this, client](const std::vector<std::string>&) { Reapply(client); });
  }
  if (Status saved = book_->Save(); !saved) Report("", "addresses", saved.error().ToString());
  ArmExpiry();
}

bool Network::Unresolved(const std::string& client) const {
  auto rules = EffectiveRules(client);
  if (!rules) return false;
  auto it = resolved_.find(client);
  for (const auto& name : net::HostnamesOf(*rules)) {
    if (it == resolved_.end() || it->second.count(name) == 0) return true;
  }
  return false;
}

void Network::Sweep() {
  const config::System& system = config_.system();
  auto gone = [&](const std::string& qube) {
    return system.Find(qube) == nullptr && !IsRunning(qube) && manager_.Record(qube) == nullptr;
  };
  // Runtime rules of qubes that no longer exist (a disposable's name is
  // given out again: a new one must not inherit them).
  if (DIR* dir = ::opendir((net_dir_ + "/firewall").c_str())) {
    std::vector<std::string> stale;
    while (dirent* entry = ::readdir(dir)) {
      std::string name = entry->d_name;
      if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".json") != 0) continue;
      std::string qube = name.substr(0, name.size() - 5);
      if (gone(qube)) stale.push_back(qube);
    }
    ::closedir(dir);
    for (const auto& qube : stale) (void)SaveRuntimeRules(qube, {});
  }
  // Their addresses.
  if (book_) {
    std::vector<std::string> stale;
    for (const auto& [qube, address] : book_->entries()) {
      if (gone(qube)) stale.push_back(qube);
    }
    for (const auto& qube : stale) book_->Release(qube);
    if (Status saved = book_->Save(); !saved) Report("", "addresses", saved.error().ToString());
  }
}

Status Network::Unlink(const std::string& client) {
  auto it = links_.find(client);
  if (it == links_.end()) return Ok();
  Link link = it->second;
  // Deleting either end of a veth deletes both.
  Status deleted = Ok();
  if (auto netvm = netns_.find(link.netvm); netvm != netns_.end()) {
    deleted = net::DeleteLink(netvm->second.get(), link.vif);
  } else if (auto own = netns_.find(client); own != netns_.end()) {
    deleted = net::DeleteLink(own->second.get(), kQubeIfname);
  }
  // A link that could not be deleted stays known (tried again next time).
  if (!deleted) return deleted;
  // Its connections in the netvm go too: its address may be given to
  // another qube, which must not get the old connections' answers.
  if (auto netvm = netns_.find(link.netvm); netvm != netns_.end()) {
    if (auto forgotten = net::ForgetConnections(netvm->second.get(), link.address); !forgotten) {
      Report(client, "conntrack", forgotten.error().ToString());
    }
  }
  links_.erase(client);
  resolved_.erase(client);
  compiled_.Forget(client + "/declared");
  compiled_.Forget(client + "/runtime");
  audit_.Write(
      {{"kind", "network"}, {"qube", client}, {"action", "unlinked"}, {"netvm", link.netvm}});
  return deleted;
}

Status Network::LinkClient(const std::string& client, const std::string& netvm) {
  const uint32_t address = TRY(book_->AddressOf(client));
  const uint32_t gateway = TRY(book_->AddressOf(netvm));
  const std::string vif = net::ClientIfname(address, book_->range());
  const int netvm_fd = netns_.at(netvm).get();
  const int client_fd = netns_.at(client).get();
  // One netlink socket per namespace for the whole link (docs/NETWORK.md
  // "Links"); no IPv6 in the qube: nothing on its link provides it.
  net::Netlink netvm_nl = TRY(net::Netlink::In(netvm_fd));
  net::Netlink client_nl =
      TRY(net::Netlink::In(client_fd, {{"net/ipv6/conf/all/disable_ipv6", "1"},
                                       {"net/ipv6/conf/default/disable_ipv6", "1"}}));
  // What an earlier daemon (killed) left is made anew.
  TRY(netvm_nl.DeleteLink(vif));
  TRY(client_nl.DeleteLink(kQubeIfname));
  TRY(net::RunNft(client_fd, net::RenderQubeInputTable()));
  TRY(netvm_nl.CreateVeth(vif, client_fd, kQubeIfname));
  links_[client] = Link{netvm, vif, address, gateway, ++next_serial_};
  auto fail = [&](Error error) -> Status {
    (void)Unlink(client);
    return Err(std::move(error));
  };
  // The rules know the link before it comes up (a host name not resolved
  // yet: its chain drops everything until it is).
  if (Status applied = ApplyRules(netvm); !applied) return fail(applied.error());
  Status up = [&]() -> Status {
    TRY(netvm_nl.AddAddress(vif, gateway, 32));
    TRY(netvm_nl.SetLinkUp(vif));
    TRY(netvm_nl.AddRoute(address, 32, std::nullopt, vif));
    TRY(client_nl.AddAddress(kQubeIfname, address, 32));
    TRY(client_nl.SetLinkUp(kQubeIfname));
    TRY(client_nl.AddRoute(gateway, 32, std::nullopt, kQubeIfname));
    TRY(client_nl.AddRoute(0, 0, gateway, kQubeIfname));
    return Ok();
  }();
  if (!up) return fail(up.error());
  if (Unresolved(client)) {
    Resolve(client, [this, client](const std::vector<std::string>&) { Reapply(client); });
  }
  return Ok();
}

std::vector<uint32_t> Network::ResolversOf(const config::Qube& netvm) const {
  if (!netvm.uplink.empty()) return uplinks_.Resolvers(netvm.name, netvm);
  // Its own netvm's, by redirection, if the chain has an uplink at its head.
  const config::Qube* head = &netvm;
  for (int hops = 0; head != nullptr && head->netvm && hops < 64; ++hops) {
    head = config_.system().Find(*head->netvm);
  }
  if (head != nullptr && head != &netvm && !head->uplink.empty()) {
    return {net::kVirtualDns1, net::kVirtualDns2};
  }
  return {};
}

Status Network::ApplyRules(const std::string& netvm, bool force) {
  const config::Qube* q = ConfigOf(netvm);
  auto ns = netns_.find(netvm);
  if (q == nullptr || ns == netns_.end()) return Ok();
  net::NetvmRules rules;
  rules.uplink = !q->uplink.empty()         ? Uplinks::Interface(*q)
                 : links_.count(netvm) != 0 ? kQubeIfname
                                            : "";
  rules.dns = ResolversOf(*q);
  const int64_t now = Now();
  std::vector<std::pair<std::string, std::string>> problems;  // reported if applied
  for (const auto& [client, link] : links_) {
    if (link.netvm != netvm) continue;
    net::NetvmClient c;
    c.qube = client;
    c.address = link.address;
    c.ifname = link.vif;
    auto it = resolved_.find(client);
    const auto hosts = it == resolved_.end() ? decltype(it->second){} : it->second;
    // Declared rules (an empty list accepts everything) ...
    const config::Qube* own = ConfigOf(client);
    auto declared = own != nullptr
                        ? compiled_.Compile(client + "/declared", {own->firewall, hosts, now})
                        : Result<std::vector<std::string>>(
                              std::vector<std::string>{"drop"});  // unknown: nothing passes
    if (declared) {
      c.firewall = std::move(*declared);
    } else {
      problems.emplace_back(client, declared.error().ToString());  // empty: drops everything
    }
    // ... after the runtime ones, whose final verdict is left out.
    auto runtime = RuntimeRules(client);
    if (runtime && !runtime->empty()) {
      auto compiled = compiled_.Compile(client + "/runtime", {*runtime, hosts, now});
      if (compiled) {
        compiled->pop_back();
        c.runtime = std::move(*compiled);
      } else {
        problems.emplace_back(client, compiled.error().ToString());
        c.runtime = {"drop"};
      }
    } else if (!runtime) {
      problems.emplace_back(client, runtime.error().ToString());
      c.runtime = {"drop"};
    }
    rules.clients.push_back(std::move(c));
  }
  auto in_force = applied_.find(netvm);
  std::string script = net::RenderNetvmUpdate(
      force || in_force == applied_.end() ? nullptr : &in_force->second, rules);
  if (script.empty()) return Ok();
  for (const auto& [client, why] : problems) {
    // A name being resolved is not a problem yet (its chain drops meanwhile).
    if (resolving_.count(client) != 0) continue;
    Report(client, "firewall", why + "; dropping everything");
  }
  if (auto ran = net::RunNft(ns->second.get(), script); !ran) {
    // The table is as it was, or (a failed first apply) absent: the next
    // apply replaces it whole.
    applied_.erase(netvm);
    return Err(ran.error());
  }
  applied_[netvm] = std::move(rules);
  return Ok();
}

void Network::Resolve(const std::string& client,
                      std::function<void(std::vector<std::string>)> then) {
  resolve_tried_[client] = std::chrono::steady_clock::now();
  auto link = links_.find(client);
  auto effective = EffectiveRules(client);
  if (link == links_.end() || !effective) return then({});
  const config::Qube* netvm = ConfigOf(link->second.netvm);
  auto ns = netns_.find(link->second.netvm);
  if (netvm == nullptr || ns == netns_.end()) return then({});
  std::vector<std::string> names = net::HostnamesOf(*effective);
  if (names.empty()) {
    resolved_[client] = {};
    return then({});
  }
  // The worker's own descriptor: the netvm may stop meanwhile.
  auto fd = std::make_shared<UniqueFd>(::fcntl(ns->second.get(), F_DUPFD_CLOEXEC, 0));
  if (!*fd) return then({"(all): " + Error::FromErrno("dup the netvm's namespace").ToString()});
  struct Answers {
    std::map<std::string, std::vector<std::string>> hosts;
    std::vector<std::string> failed;  // "name: why"
  };
  const uint64_t serial = link->second.serial;
  ++resolving_[client];
  pool_.Run<Answers>(
      [fd, names, servers = ResolversOf(*netvm)] {
        Answers out;
        for (const std::string& name : names) {
          auto addresses = net::ResolveIpv4(fd->get(), name, servers, kResolveTimeout);
          if (!addresses) {
            // Left out: the compile fails and the client's chain drops everything.
            out.failed.push_back(name + ": " + addresses.error().ToString());
            continue;
          }
          auto& list = out.hosts[name];
          for (uint32_t a : *addresses) list.push_back(net::FormatIpv4(a));
        }
        return out;
      },
      [this, alive = std::weak_ptr<char>(alive_), client, serial,
       then = std::move(then)](Answers answers) {
        if (alive.expired()) return;
        if (auto r = resolving_.find(client); r != resolving_.end() && --r->second <= 0) {
          resolving_.erase(r);
        }
        auto now_linked = links_.find(client);
        if (now_linked == links_.end()) return then({});
        // Linked anew meanwhile (perhaps to another netvm): asked again there.
        if (now_linked->second.serial != serial) return Resolve(client, then);
        for (const auto& failure : answers.failed) Report(client, "resolve", failure);
        resolved_[client] = std::move(answers.hosts);
        then(std::move(answers.failed));
      });
}

void Network::Reapply(const std::string& client) {
  auto link = links_.find(client);
  if (link == links_.end()) return;
  if (Status applied = ApplyRules(link->second.netvm); !applied) {
    Report(client, "rules", applied.error().ToString());
  }
  ArmExpiry();
}

void Network::ArmExpiry() {
  std::optional<int64_t> next;
  const int64_t now = Now();
  for (const auto& [client, link] : links_) {
    auto rules = EffectiveRules(client);
    if (!rules) continue;
    if (auto at = net::NextExpiry(*rules, now); at && (!next || *at < *next)) next = at;
  }
  for (const auto& [client, link] : links_) {
    if (Unresolved(client)) {
      auto retry = now + std::chrono::duration_cast<std::chrono::seconds>(kResolveRetry).count();
      if (!next || retry < *next) next = retry;
    }
  }
  expiry_timer_.Reset();
  if (!next) return;
  // Woken at least daily: the clock may be set meanwhile.
  auto delay = std::chrono::seconds(std::clamp<int64_t>(*next - now, 0, 24 * 3600)) +
               std::chrono::milliseconds(50);
  expiry_timer_ = loop_.After(std::chrono::duration_cast<std::chrono::milliseconds>(delay),
                              [this] { Reconcile(); });
}

json Network::Describe(const std::string& qube) const {
  json out{{"netvm", nullptr},
           {"ip", nullptr},
           {"gateway", nullptr},
           {"dns", nullptr},
           {"linked", false}};
  if (auto netvm = WantedNetvm(qube)) out["netvm"] = *netvm;
  if (auto it = links_.find(qube); it != links_.end()) {
    out["ip"] = net::FormatIpv4(it->second.address);
    out["gateway"] = net::FormatIpv4(it->second.gateway);
    out["dns"] = {net::FormatIpv4(net::kVirtualDns1), net::FormatIpv4(net::kVirtualDns2)};
    out["linked"] = true;
  }
  return out;
}

void Network::Report(const std::string& qube, const std::string& action, const std::string& error) {
  Log(LogLevel::kWarn, "network", {{"qube", qube}, {"action", action}, {"error", error}});
  audit_.Write({{"kind", "network"}, {"qube", qube}, {"action", action}, {"error", error}});
  events_.Emit({{"event", "network_error"}, {"qube", qube}, {"action", action}, {"error", error}});
}

}  // namespace tessera::daemon
