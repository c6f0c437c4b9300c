// tesserad's wiring: instance locks, the components, recovery, the loop, and a
// clean shutdown (cells keep running; the next tesserad adopts them).

#include "daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/launcher.h"
#include "cell/cell_backend.h"
#include "common/fs.h"
#include "common/log.h"
#include "daemon/admin_methods.h"
#include "daemon/admin_server.h"
#include "daemon/audit.h"
#include "daemon/auth.h"
#include "daemon/clipboard.h"
#include "daemon/config_store.h"
#include "daemon/denial_reporter.h"
#include "daemon/desktop_notifier.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/network.h"
#include "daemon/policy_watcher.h"
#include "daemon/qube_manager.h"
#include "daemon/rpc_broker.h"
#include "daemon/rpc_prompts.h"
#include "daemon/run_command.h"
#include "daemon/systemd_scopes.h"
#include "daemon/updates_forwarder.h"
#include "storage/generations.h"
#include "storage/nix_template.h"

namespace tessera::daemon {
namespace {

constexpr size_t kWorkers = 4;

// Takes the exclusive flock on `lock_path` and writes our pid into it.
Result<UniqueFd> LockInstance(const std::string& lock_path, const char* what,
                              const std::string& dir) {
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Err(Error::FromErrno("open " + lock_path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    if (auto text = ReadFile(lock_path, 64); text) holder = *text;
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
    return Err(Error("another tesserad is already running" +
                         (holder.empty() ? std::string() : " (pid " + holder + ")") + " for " +
                         what + " directory " + dir + " (lock " + lock_path + ")",
                     EWOULDBLOCK));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) == 0) (void)!::pwrite(fd.get(), pid.data(), pid.size(), 0);
  return fd;
}

// Many admin connections and agent channels: use the hard limit.
void RaiseDescriptorLimit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

class Daemon {
 public:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)) {}

  Status Init() {
    if (::geteuid() != 0) {
      return Err(Error("tesserad must run as root (it creates namespaces, cgroups and mounts)", EPERM));
    }
    const storage::Layout& layout = options_.layout;
    TRY(MakeDirs(layout.runtime_dir, 0755));
    TRY(MakeDirs(layout.state_dir + "/daemon", 0700));
    // Single instance: exclusive flocks on R/tesserad.lock and
    // S/daemon/tesserad.lock, held for life. Either one taken means another
    // daemon owns these qubes (two daemons sharing a state dir with different
    // runtime dirs would fight over state.json and the private volumes).
    runtime_lock_ = TRY(LockInstance(layout.runtime_dir + "/tesserad.lock", "runtime", layout.runtime_dir));
    state_lock_ = TRY(LockInstance(layout.state_dir + "/daemon/tesserad.lock", "state", layout.state_dir));
    audit_ = TRY(AuditLog::Open(layout.state_dir + "/audit"));
    config_ = std::make_unique<ConfigStore>(TRY(ConfigStore::Load(
        {.use_example = options_.use_example,
         .config_path = options_.config_path,
         .applied_path = layout.state_dir + "/daemon/applied.json"})));
    RaiseDescriptorLimit();
    std::string why = "--cgroups tessera";
    if (options_.cgroups != CgroupManager::kTessera) scopes_ = SystemdScopes::Detect(&why);
    if (!scopes_ && options_.cgroups == CgroupManager::kSystemd) {
      return Err(Error("--cgroups systemd: " + why, ENOTSUP));
    }
    if (scopes_) {
      Log(LogLevel::kInfo, "qube cgroups", {{"manager", "systemd"}, {"slice", cell::kQubeSlice}});
    } else {
      Log(LogLevel::kInfo, "qube cgroups", {{"manager", "tessera"}, {"why", why}});
    }
    return Ok();
  }

  int Run() {
    // Signals are handled by the loop; blocked before any thread exists so
    // every thread (the workers) inherits the mask.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    auto loop = EventLoop::Create();
    if (!loop) return Fatal(loop.error());
    loop_ = std::move(*loop);
    pool_ = std::make_unique<WorkerPool>(*loop_, kWorkers);
    cell::CellOptions cell_options;
    cell_options.agent_path = options_.agent_path;
    // Denials are reported (denial_reporter.h), not only refused.
    cell_options.seccomp_mode = cell::SeccompMode::kNotify;
    cell_options.units = scopes_;
    backend_ = std::make_unique<cell::CellBackend>(options_.layout, cell_options);
    ManagerOptions manager_options;
    manager_options.stop_grace = options_.stop_grace;
    launcher_ = std::make_unique<backend::StorageLauncher>(*backend_, options_.layout);
    manager_ = std::make_unique<QubeManager>(*loop_, *pool_, *launcher_, options_.layout, *config_,
                                             *audit_, events_,
                                             options_.layout.state_dir + "/daemon/state.json",
                                             manager_options);
    denials_ = std::make_unique<DenialReporter>(*loop_, *audit_, events_);
    manager_->AddObserver(denials_.get());
    // Before recovery, so that adopted qubes are linked again.
    network_ = std::make_unique<Network>(*loop_, *pool_, *manager_, *config_, *audit_, events_,
                                         options_.layout.state_dir);
    manager_->AddObserver(network_.get());
    manager_->Recover();
    network_->AfterRecovery();
    // After recovery released what dead qubes held: template generations no
    // running qube uses are removed (storage/generations.h).
    if (auto collected = storage::CollectAllGenerations(options_.layout); !collected) {
      Log(LogLevel::kWarn, "template generations not collected",
          {{"error", collected.error().ToString()}});
    }
    // GC roots of Nix closures belong to running qubes only.
    std::set<std::string> running;
    for (const auto& [name, state] : manager_->States()) {
      if (state != QubeState::kHalted && state != QubeState::kFailed) running.insert(name);
    }
    if (auto pruned = storage::PruneNixRoots(options_.layout, running); !pruned) {
      Log(LogLevel::kWarn, "stale GC roots not removed", {{"error", pruned.error().ToString()}});
    }
    AdminServerOptions server_options;
    server_options.socket_path = options_.layout.runtime_dir + "/admin.sock";
    server_options.socket_mode = options_.socket_mode;
    server_options.admin_group = options_.admin_group;
    server_ = std::make_unique<AdminServer>(*loop_, *audit_, server_options);
    runs_ = std::make_unique<RunCommands>(*loop_, *server_, *manager_, *audit_,
                                          backend_->capabilities());
    network_->SetRunner(runs_.get());  // DHCP clients on uplinks
    policies_ = std::make_unique<PolicyWatcher>(*loop_, *audit_, events_);
    policies_->Watch(PolicyDirsFor(config_->system().policy_dir, options_.layout.runtime_dir));
    prompts_ = std::make_unique<RpcPrompts>(*loop_, *server_, events_, [this] {
      return std::chrono::seconds(config_->system().rpc.ask_timeout_s);
    });
    broker_ =
        std::make_unique<RpcBroker>(*loop_, *server_, *manager_, *runs_, *policies_, *prompts_,
                                    *audit_, events_, options_.layout.runtime_dir, RpcLimits{});
    notifier_ = std::make_unique<DesktopNotifier>(*pool_);
    broker_->SetNotifier(notifier_.get());
    manager_->AddObserver(broker_.get());
    forwarder_ = std::make_unique<UpdatesForwarder>(*loop_, *manager_, *runs_);
    manager_->AddObserver(forwarder_.get());
    broker_->TakeRunningQubes();
    network_->RegisterMethods(*server_);
    server_->Register("rpc.call", {}, [this](AdminServer::Call call) {
      broker_->HandleAdminCall(std::move(call));
    });
    server_->Register("rpc.prompt", {},
                      [this](AdminServer::Call call) { prompts_->HandlePrompt(std::move(call)); });
    server_->Register("rpc.asks", {},
                      [this](AdminServer::Call call) { prompts_->HandleAsks(std::move(call)); });
    server_->Register("rpc.answer", {},
                      [this](AdminServer::Call call) { prompts_->HandleAnswer(std::move(call)); });
    clipboard_ = std::make_unique<Clipboard>(*loop_, *server_, *manager_, *runs_, *policies_,
                                             *broker_, *audit_, events_);
    server_->Register("clipboard.copy", {},
                      [this](AdminServer::Call call) { clipboard_->HandleCopy(std::move(call)); });
    server_->Register("clipboard.paste", {},
                      [this](AdminServer::Call call) { clipboard_->HandlePaste(std::move(call)); });
    server_->Register("clipboard.show", {},
                      [this](AdminServer::Call call) { clipboard_->HandleShow(std::move(call)); });
    server_->Register("clipboard.clear", {},
                      [this](AdminServer::Call call) { clipboard_->HandleClear(std::move(call)); });
    methods_ = std::make_unique<MethodContext>(
        MethodContext{*loop_, *pool_, *server_, *manager_, *runs_, *policies_, events_, *audit_,
                      options_.layout, options_.stop_grace, options_.allow_host_sources_group});
    RegisterAdminMethods(*methods_);
    // Groups are looked up per connection and request (one created later
    // counts); one missing now is worth a warning, before the socket
    // listens. The admin group's is Listen's: it also decides the socket's group.
    if (!options_.allow_host_sources_group.empty() &&
        !LookupGroupId(options_.allow_host_sources_group)) {
      Log(LogLevel::kWarn,
          "group of --allow-host-sources does not exist: only root may apply host-path sources",
          {{"group", options_.allow_host_sources_group}});
    }
    if (auto listening = server_->Listen(); !listening) return Fatal(listening.error());
    for (int signo : {SIGTERM, SIGINT}) {
      auto watch = loop_->OnSignal(signo, [this](const signalfd_siginfo&) { BeginShutdown(); });
      if (!watch) return Fatal(watch.error());
      signal_watches_.push_back(std::move(*watch));
    }
    audit_->Write({{"kind", "daemon"}, {"action", "start"}, {"pid", ::getpid()},
                   {"description", config_->source()}});
    Log(LogLevel::kInfo, "tesserad ready",
        {{"socket", options_.layout.runtime_dir + "/admin.sock"}, {"description", config_->source()}});
    if (options_.autostart) manager_->Autostart();
    // Preloaded disposables are not autostart qubes: kept ready either way.
    manager_->RefillPreloaded();
    if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, "READY=1");

    int rc = loop_->Run();

    audit_->Write({{"kind", "daemon"}, {"action", "stop"}, {"pid", ::getpid()}});
    // Components go in the reverse order of their dependencies; the workers
    // are idle (the shutdown waited for them).
    signal_watches_.clear();
    idle_check_.Reset();
    methods_.reset();
    clipboard_.reset();
    network_->SetRunner(nullptr);
    runs_.reset();
    manager_->RemoveObserver(forwarder_.get());
    forwarder_.reset();
    manager_->RemoveObserver(broker_.get());
    broker_.reset();
    manager_->RemoveObserver(network_.get());
    network_.reset();
    notifier_.reset();
    prompts_.reset();
    policies_.reset();
    server_.reset();
    manager_.reset();
    denials_.reset();
    pool_.reset();
    loop_.reset();
    return rc < 0 ? 1 : 0;
  }

 private:
  int Fatal(const Error& error) {
    std::fprintf(stderr, "tesserad: %s\n", error.ToString().c_str());
    return 1;
  }

  // SIGTERM/SIGINT: stop serving, let every start or stop in flight finish
  // (their state reaches the state file), then leave. Qubes keep running.
  void BeginShutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, "STOPPING=1");
    Log(LogLevel::kInfo, "tesserad stopping (qubes keep running)");
    server_->Close();
    manager_->BeginShutdown();
    WaitForIdle();
  }

  void WaitForIdle() {
    if (manager_->Idle() && pool_->busy() == 0) {
      loop_->Exit(0);
      return;
    }
    idle_check_ = loop_->After(std::chrono::milliseconds(20), [this] { WaitForIdle(); });
  }

  DaemonOptions options_;
  UniqueFd runtime_lock_;
  UniqueFd state_lock_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<ConfigStore> config_;
  EventBus events_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WorkerPool> pool_;
  std::shared_ptr<SystemdScopes> scopes_;  // null: tessera's own cgroups
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<backend::Launcher> launcher_;
  std::unique_ptr<DenialReporter> denials_;
  std::unique_ptr<Network> network_;
  std::unique_ptr<UpdatesForwarder> forwarder_;
  std::unique_ptr<QubeManager> manager_;
  std::unique_ptr<AdminServer> server_;
  std::unique_ptr<RunCommands> runs_;
  std::unique_ptr<PolicyWatcher> policies_;
  std::unique_ptr<RpcPrompts> prompts_;
  std::unique_ptr<DesktopNotifier> notifier_;
  std::unique_ptr<RpcBroker> broker_;
  std::unique_ptr<Clipboard> clipboard_;
  std::unique_ptr<MethodContext> methods_;
  std::vector<EventLoop::Watch> signal_watches_;
  EventLoop::Timer idle_check_;
  bool shutting_down_ = false;
};

}  // namespace

int RunDaemon(const DaemonOptions& options) {
  Daemon daemon(options);
  if (auto status = daemon.Init(); !status) {
    std::fprintf(stderr, "tesserad: %s\n", status.error().ToString().c_str());
    return status.error().errno_value() == EWOULDBLOCK ? 3 : 1;
  }
  return daemon.Run();
}

}  // namespace tessera::daemon
