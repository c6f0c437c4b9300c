#pragma once
// The qube manager: every qube tesserad knows, its lifecycle state machine,
// the state file, and the running instances with their agent channels. It
// lives on the event loop thread; the blocking work of a transition (the
// launcher, a backend stop) runs on the worker pool and comes back as a
// callback. A qube in `starting`/`stopping` belongs to the operation that
// moved it there; other requests for it wait for it to settle.
//
//   halted ──start──▶ starting ──▶ running ──stop──▶ stopping ──▶ halted
//                        │             │ exited on its own
//                        ▼             ▼
//                     failed(reason) ◀─┘        (start or stop from failed is allowed)
//
//   manager.Start("work", [](ApiResult<json> r) { ... });
//   manager.Stop("work", grace, done);
//   manager.StartDisposable("", DisposableOwner::kRun, [](ApiResult<std::string> name) { ... });
//
// Networking and RPC attach through LifecycleObserver, without editing the
// state machine.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/launcher.h"
#include "backend/planner.h"
#include "daemon/agent_channel.h"
#include "daemon/api.h"
#include "daemon/audit.h"
#include "daemon/config_store.h"
#include "daemon/diff.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "daemon/state.h"
#include "storage/storage.h"

namespace tessera::daemon {

class LifecycleObserver {
 public:
  virtual ~LifecycleObserver() = default;
  // The qube runs (its instance is ready for channels, networking).
  virtual void OnRunning(const std::string& /*qube*/, backend::Instance& /*instance*/) {}
  // The qube is about to be stopped (its instance still exists).
  virtual void OnStopping(const std::string& /*qube*/) {}
  // The qube is gone (halted, failed or destroyed).
  virtual void OnStopped(const std::string& /*qube*/) {}
  // A new description is in force (apply): what a running qube should be
  // connected to may have changed.
  virtual void OnSystemAdopted() {}
  // A new agent channel of the running qube was opened (the first, or one
  // replacing a broken one).
  virtual void OnChannel(const std::string& /*qube*/, AgentChannel& /*channel*/) {}
};

struct ManagerOptions {
  std::chrono::milliseconds stop_grace{5000};
  AgentChannel::Limits channel_limits;
};

class QubeManager {
 public:
  // `launcher` starts and retires instances (backend + storage); `layout`
  // is where storage lives (for naming disposables and recovery).
  QubeManager(EventLoop& loop, WorkerPool& pool, backend::Launcher& launcher,
              storage::Layout layout, ConfigStore& config, AuditLog& audit, EventBus& events,
              std::string state_path, ManagerOptions options);
  ~QubeManager();

  // Startup, before the loop serves anyone (blocking): brings the state in
  // line with what really runs (recovery.h).
  void Recover();
  // Starts every autostart qube (asynchronously).
  void Autostart();

  void Start(const std::string& name, Done<nlohmann::json> done);
  void Stop(const std::string& name, std::chrono::milliseconds grace, Done<nlohmann::json> done);
  // A new disposable from `dvm_template` ("" = the system's default_dispvm).
  void StartDisposable(const std::string& dvm_template, DisposableOwner owner,
                       Done<std::string> done);
  // A running preloaded disposable of `dvm_template`, now owned by a run; ""
  // if none is ready.
  std::string TakePreloaded(const std::string& dvm_template);
  // Keeps `preload-dispvm-max` disposables running per disposable template.
  void RefillPreloaded();
  // `stop --all` / `kill --all`: no new preloaded disposables until one is
  // asked for (TakePreloaded, StartDisposable) or a description is adopted,
  // so stopping everything leaves nothing running.
  void PausePreload() { preload_paused_ = true; }
  // An apply begins (false: another one is still being carried out; one at a
  // time, or the second would plan against a description about to change).
  // Until AdoptSystem switches to the new description the pool makes nothing
  // from the old one and hands out none of `leaving` (preloaded disposables
  // the apply replaces or stops). EndApply when its last step is done.
  bool BeginApply(const std::vector<std::string>& leaving);
  void EndApply() { applying_ = false; }
  // The disposables that exist (any state but halted), by name.
  std::vector<RunningDisposable> Disposables() const;

  // The running qube's agent channel, opened on first use.
  Result<AgentChannel*> Channel(const std::string& name);
  // The running qube's OOM kills and memory limit (backend::Instance::Memory).
  Result<backend::MemoryEvents> Memory(const std::string& name) const;
  // Commands running in a qube: no idle timeout while any does.
  void SessionStarted(const std::string& name);
  void SessionEnded(const std::string& name);

  // Volume operations (volume_methods.h) hold the halted qubes whose files
  // they move, so that no start begins meanwhile: a start of a held qube is
  // refused (busy). Hold fails (invalid_state) unless the qube is configured
  // and halted or failed, and (busy) if it is held already.
  ApiResult<bool> Hold(const std::string& name);
  void Release(const std::string& name);

  // Switches to a new description (apply step 3): qubes added get an entry,
  // removed halted ones are forgotten.
  void AdoptSystem(config::System next, std::string source);

  bool Exists(const std::string& name) const { return qubes_.count(name) != 0; }
  const QubeRecord* Record(const std::string& name) const;
  std::map<std::string, QubeState> States() const;
  // Qubes a command (a `run`, an RPC service) runs in now.
  std::set<std::string> Busy() const;
  std::vector<std::string> Names() const;
  // One `qube.list` entry: every key always present, null where absent
  // (docs/DAEMON.md, "qube.list").
  nlohmann::json Summary(const std::string& name) const;
  ApiError NoSuchQube(const std::string& name) const;
  const ConfigStore& config() const { return config_; }

  void AddObserver(LifecycleObserver* observer) { observers_.push_back(observer); }
  void RemoveObserver(LifecycleObserver* observer) { std::erase(observers_, observer); }
  // No new starts; true once nothing is in flight.
  void BeginShutdown() { shutting_down_ = true; }
  bool Idle() const { return in_flight_ == 0; }

 private:
  struct Entry {
    QubeRecord record;
    std::unique_ptr<backend::Instance> instance;
    EventLoop::Watch exit_watch;
    std::unique_ptr<AgentChannel> channel;
    uint64_t channel_generation = 0;
    int sessions = 0;
    bool leaving_pool = false;  // preloaded, but an apply is replacing or stopping it
    bool held = false;          // by a volume operation (Hold)
    EventLoop::Timer idle_timer;
    std::vector<std::function<void()>> waiters;  // run when it leaves starting/stopping
  };

  Entry* Find(const std::string& name);
  const Entry* Find(const std::string& name) const;
  void SetState(const std::string& name, Entry& entry, QubeState state, std::string reason = "");
  void Persist();
  void AuditLifecycle(const std::string& qube, std::string_view what, const std::string& reason);
  void StartChecked(const std::string& name, int depth, Done<nlohmann::json> done);
  void Launch(const std::string& name, backend::LaunchPlan plan, int depth,
              Done<nlohmann::json> done);
  void Started(const std::string& name, std::unique_ptr<backend::Instance> instance,
               Done<nlohmann::json> done);
  void StartFailed(const std::string& name, std::string reason, Done<nlohmann::json> done);
  void Exited(const std::string& name);
  void Forget(const std::string& name);
  void ArmIdleTimer(const std::string& name, Entry& entry);
  uint32_t IdleTimeout(const std::string& name, const Entry& entry) const;
  std::string FreshDisposableName();
  // Runs blocking `work` on the pool and `done` on the loop, counted in flight.
  template <class T>
  void Work(std::function<T()> work, std::function<void(T)> done);

  EventLoop& loop_;
  WorkerPool& pool_;
  backend::Launcher& launcher_;
  backend::Backend& backend_;
  storage::Layout layout_;
  ConfigStore& config_;
  AuditLog& audit_;
  EventBus& events_;
  std::string state_path_;
  ManagerOptions options_;
  std::map<std::string, Entry> qubes_;
  uint32_t next_disposable_ = 1;
  std::vector<LifecycleObserver*> observers_;
  int in_flight_ = 0;
  bool shutting_down_ = false;
  bool refilling_ = false;
  bool preload_paused_ = false;
  bool preload_held_ = false;  // an apply has not switched descriptions yet
  bool applying_ = false;      // between BeginApply and EndApply
  EventLoop::Timer refill_retry_;
};

}  // namespace tessera::daemon
