#pragma once
// The network layer of the daemon (docs/NETWORK.md): it gives running qubes
// Qubes' network model. A qube with a netvm is linked to it by a veth pair
// (`vifN` in the netvm, `eth0` in the qube) with its one stable /32 address;
// the netvm routes and NATs, and its nftables table (net/ruleset.h) keeps
// clients apart, drops spoofed sources and applies each client's firewall
// (the declared rules, after the runtime ones `tessera firewall` adds). A
// netvm with an `uplink` takes that host interface into its namespace for
// its life. Qubes without a netvm have loopback only.
//
// It observes the qube manager: every start, stop and apply brings the
// links and tables in line with the description (Reconcile), so a netvm
// that stops takes its clients' links with it, and they are linked again
// when it runs again; a qube whose netvm changes is re-linked without a
// restart. A netvm's table is applied before its client's link comes up,
// in one nft transaction, so no packet passes before the rules do.
//
// Netlink and nft calls are made on the event loop: each is milliseconds.
// Host names in firewall rules are resolved on a worker (a resolver that
// does not answer takes a second per name); meanwhile the client's chain
// drops everything (fail closed), and its rules are applied again when the
// answers are in.
//
//   Network network(loop, pool, manager, config, audit, events, state_dir);
//   manager.AddObserver(&network);    // before Recover: adopted qubes are re-linked

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "config/model.h"
#include "daemon/admin_server.h"
#include "daemon/api.h"
#include "daemon/audit.h"
#include "daemon/config_store.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/qube_manager.h"
#include "daemon/uplinks.h"
#include "net/address.h"
#include "net/firewall_cache.h"
#include "net/ruleset.h"

namespace tessera::daemon {

class Network : public LifecycleObserver {
 public:
  Network(EventLoop& loop, WorkerPool& pool, const QubeManager& manager, const ConfigStore& config,
          AuditLog& audit, EventBus& events, std::string state_dir);
  ~Network() override;

  void OnRunning(const std::string& qube, backend::Instance& instance) override;
  void OnStopping(const std::string& qube) override;
  void OnStopped(const std::string& qube) override;
  void OnSystemAdopted() override;
  // After the manager's recovery adopted what runs: links made again, and
  // what dead qubes left (runtime rules, addresses) removed.
  void AfterRecovery();

  // DHCP clients on uplinks are started through `runs` (null: no more).
  void SetRunner(RunCommands* runs) { uplinks_.SetRunner(runs); }

  // Registers firewall.list|add|del|reload (firewall_methods.cc).
  void RegisterMethods(AdminServer& server);

  // `firewall.*` admin methods (tessera firewall).
  ApiResult<nlohmann::json> ListFirewall(const std::string& qube) const;
  // Those that may resolve host names answer through `reply`, on the loop,
  // once the names are resolved and the rules applied.
  using Reply = std::function<void(ApiResult<nlohmann::json>)>;
  void AddRule(const std::string& qube, const nlohmann::json& rule, Reply reply);
  ApiResult<nlohmann::json> DeleteRule(const std::string& qube, int64_t number);
  // Resolves the qube's host names again and re-applies its netvm's table.
  void Reload(const std::string& qube, Reply reply);

  // A qube's network as it is now: {netvm, ip, gateway, dns, linked}
  // (nulls when it has none).
  nlohmann::json Describe(const std::string& qube) const;

 private:
  struct Link {
    std::string netvm;
    std::string vif;  // the netvm's end
    uint32_t address = 0;
    uint32_t gateway = 0;  // the netvm's address
    uint64_t serial = 0;   // tells a link from an earlier one of the same client
  };

  // The description's view of a running qube (a disposable: its template's).
  const config::Qube* ConfigOf(const std::string& qube) const;
  std::optional<std::string> WantedNetvm(const std::string& qube) const;
  bool IsRunning(const std::string& qube) const { return netns_.count(qube) != 0; }
  void Reconcile();  // runs again if asked while running
  void ReconcileOnce();
  void Sweep();
  Status Unlink(const std::string& client);
  Status LinkClient(const std::string& client, const std::string& netvm);
  // Renders and applies the netvm's table when it changed (or `force`).
  Status ApplyRules(const std::string& netvm, bool force = false);
  std::vector<uint32_t> ResolversOf(const config::Qube& netvm) const;
  // Runtime rules first, then the declared ones (an empty declared list is
  // its default, accept all).
  Result<std::vector<config::FirewallRule>> EffectiveRules(const std::string& client) const;
  Result<std::vector<config::FirewallRule>> RuntimeRules(const std::string& qube) const;
  Result<std::vector<config::FirewallRule>> LoadRuntimeRules(const std::string& qube) const;
  Status SaveRuntimeRules(const std::string& qube, const std::vector<config::FirewallRule>& rules);
  // Resolves the client's host names in its netvm, on a worker; `then`
  // gets what failed ("name: why") on the loop, once, after the answers are
  // kept (not if the Network is gone by then). Re-applying is the caller's.
  void Resolve(const std::string& client, std::function<void(std::vector<std::string>)> then);
  // The client's netvm table again (after its names were resolved).
  void Reapply(const std::string& client);
  // Whether some host name of the client's rules has no addresses yet.
  bool Unresolved(const std::string& client) const;
  void ArmExpiry();
  void Report(const std::string& qube, const std::string& action, const std::string& error);

  EventLoop& loop_;
  const QubeManager& manager_;
  const ConfigStore& config_;
  AuditLog& audit_;
  EventBus& events_;
  std::string net_dir_;  // S/net
  std::optional<net::AddressBook> book_;
  std::map<std::string, UniqueFd> netns_;       // running qubes
  std::map<std::string, Link> links_;           // linked clients
  Uplinks uplinks_;
  std::map<std::string, net::NetvmRules> applied_;  // netvm -> table in force
  net::FirewallCache compiled_;                     // "client/declared", "client/runtime"
  mutable std::map<std::string, std::vector<config::FirewallRule>> runtime_;         // cache
  std::map<std::string, std::map<std::string, std::vector<std::string>>> resolved_;  // client
  std::set<std::string> forwarding_;  // netvms whose ip_forward is on
  EventLoop::Timer expiry_timer_;
  std::map<std::string, std::chrono::steady_clock::time_point> resolve_tried_;
  std::map<std::string, int> resolving_;  // client -> resolutions in flight
  uint64_t next_serial_ = 0;
  WorkerPool& pool_;
  std::shared_ptr<char> alive_ = std::make_shared<char>();  // for work that outlives us
  bool reconciling_ = false;
  bool pending_ = false;
};

}  // namespace tessera::daemon
