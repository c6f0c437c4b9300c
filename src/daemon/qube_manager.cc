#include "daemon/qube_manager.h"

#include <algorithm>
#include <cstdlib>

#include "common/log.h"
#include "common/text.h"
#include "daemon/recovery.h"
#include "storage/private_volume.h"
#include "storage/volume_ops.h"

namespace tessera::daemon {

using nlohmann::json;
namespace codes = wire::codes;

QubeManager::QubeManager(EventLoop& loop, WorkerPool& pool, backend::Launcher& launcher,
                         storage::Layout layout, ConfigStore& config, AuditLog& audit,
                         EventBus& events, std::string state_path, ManagerOptions options)
    : loop_(loop),
      pool_(pool),
      launcher_(launcher),
      backend_(launcher.backend()),
      layout_(std::move(layout)),
      config_(config),
      audit_(audit),
      events_(events),
      state_path_(std::move(state_path)),
      options_(options) {}

QubeManager::~QubeManager() {
  // Channels first: their sessions' sinks may still reach into the manager.
  for (auto& [name, entry] : qubes_) entry.channel.reset();
}

template <class T>
void QubeManager::Work(std::function<T()> work, std::function<void(T)> done) {
  ++in_flight_;
  pool_.Run<T>(std::move(work), [this, done = std::move(done)](T result) {
    --in_flight_;
    done(std::move(result));
  });
}

QubeManager::Entry* QubeManager::Find(const std::string& name) {
  auto it = qubes_.find(name);
  return it == qubes_.end() ? nullptr : &it->second;
}

const QubeManager::Entry* QubeManager::Find(const std::string& name) const {
  auto it = qubes_.find(name);
  return it == qubes_.end() ? nullptr : &it->second;
}

const QubeRecord* QubeManager::Record(const std::string& name) const {
  const Entry* e = Find(name);
  return e == nullptr ? nullptr : &e->record;
}

std::map<std::string, QubeState> QubeManager::States() const {
  std::map<std::string, QubeState> states;
  for (const auto& [name, e] : qubes_) states[name] = e.record.state;
  return states;
}

std::set<std::string> QubeManager::Busy() const {
  std::set<std::string> busy;
  for (const auto& [name, e] : qubes_) {
    if (e.sessions > 0) busy.insert(name);
  }
  return busy;
}

std::vector<std::string> QubeManager::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, e] : qubes_) names.push_back(name);
  return names;
}

ApiError QubeManager::NoSuchQube(const std::string& name) const {
  std::string message = "no such qube: " + name;
  if (auto best = ClosestMatch(name, Names())) message += " (did you mean " + *best + "?)";
  return {codes::kNoSuchQube, message};
}

json QubeManager::Summary(const std::string& name) const {
  const Entry* e = Find(name);
  if (e == nullptr) return json();
  const QubeRecord& r = e->record;
  // Every key is always there; what is not known or not set is null (never
  // "" or "-"), so a script can tell "absent" from a value.
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  json q = {{"name", name},
            {"state", ToString(r.state)},
            {"since", or_null(r.since)},
            {"class", nullptr},
            {"template", nullptr},
            {"netvm", nullptr},
            {"label", nullptr},
            {"memory", nullptr},
            {"autostart", nullptr},
            {"reason", nullptr},
            {"pid", nullptr}};
  const config::System& system = config_.system();
  auto describe = [&](const config::Qube& c, std::string_view klass, const std::string& tpl,
                      bool autostart) {
    q["class"] = klass;
    q["template"] = or_null(tpl);
    q["netvm"] = c.netvm ? json(*c.netvm) : json(nullptr);
    q["label"] = or_null(c.label);
    q["memory"] = c.memory_mib;
    q["autostart"] = autostart;
  };
  if (const config::Qube* c = system.Find(name)) {
    describe(*c, config::ToString(c->klass), c->template_name.value_or(""), c->autostart);
  } else if (const config::Qube* t = system.Find(r.dvm_template)) {
    describe(*t, "disposable", r.dvm_template, false);
  } else if (!r.dvm_template.empty()) {
    q["class"] = "disposable";  // its template is gone from the description
    q["template"] = r.dvm_template;
  }
  q["reason"] = or_null(r.reason);
  if (e->instance) q["pid"] = e->instance->pid();
  q["commands"] = e->sessions;
  return q;
}

void QubeManager::Persist() {
  DaemonState state;
  state.next_disposable = next_disposable_;
  for (const auto& [name, e] : qubes_) {
    if (e.record.state == QubeState::kHalted && e.record.disposable == DisposableOwner::kNone) {
      continue;
    }
    state.qubes[name] = e.record;
  }
  if (auto status = SaveState(state_path_, state, Durability::kCrashSafe); !status) {
    Log(LogLevel::kError, "cannot write daemon state", {{"error", status.error().ToString()}});
  }
}

Result<backend::MemoryEvents> QubeManager::Memory(const std::string& name) const {
  const Entry* e = Find(name);
  if (e == nullptr || !e->instance) return Err(Error("qube " + name + " is not running", ESRCH));
  return e->instance->Memory();
}

void QubeManager::AuditLifecycle(const std::string& qube, std::string_view what,
                                 const std::string& reason) {
  json record = {{"kind", "lifecycle"}, {"qube", qube}, {"state", what}};
  if (!reason.empty()) record["reason"] = reason;
  audit_.Write(record);
}

void QubeManager::SetState(const std::string& name, Entry& e, QubeState state, std::string reason) {
  bool settled_before = e.record.state != QubeState::kStarting && e.record.state != QubeState::kStopping;
  e.record.state = state;
  e.record.reason = std::move(reason);
  e.record.since = NowRfc3339();
  Persist();
  AuditLifecycle(name, ToString(state), e.record.reason);
  json event = {{"event", "state"}, {"qube", name}, {"state", ToString(state)}, {"ts", e.record.since}};
  if (!e.record.reason.empty()) event["reason"] = e.record.reason;
  events_.Emit(std::move(event));
  Log(LogLevel::kInfo, "qube state",
      {{"qube", name}, {"state", ToString(state)}, {"reason", e.record.reason}});
  bool settled = state != QubeState::kStarting && state != QubeState::kStopping;
  if (settled && !settled_before && !e.waiters.empty()) {
    // Waiters re-evaluate from scratch, after this transition has finished.
    loop_.Post([waiters = std::move(e.waiters)] {
      for (const auto& w : waiters) w();
    });
    e.waiters.clear();
  }
}

void QubeManager::Forget(const std::string& name) {
  auto it = qubes_.find(name);
  if (it == qubes_.end()) return;
  auto waiters = std::move(it->second.waiters);
  qubes_.erase(it);
  Persist();
  AuditLifecycle(name, "destroyed", "");
  events_.Emit({{"event", "destroyed"}, {"qube", name}});
  if (!waiters.empty()) {
    loop_.Post([waiters = std::move(waiters)] {
      for (const auto& w : waiters) w();
    });
  }
}

// ---------------------------------------------------------------------------
// Start

void QubeManager::Start(const std::string& name, Done<json> done) { StartChecked(name, 0, std::move(done)); }

void QubeManager::StartChecked(const std::string& name, int depth, Done<json> done) {
  if (depth > 16) return done(Fail(codes::kFailed, "netvm chain too deep at " + name));
  Entry* e = Find(name);
  if (e == nullptr) return done(tl::unexpected(NoSuchQube(name)));
  switch (e->record.state) {
    case QubeState::kRunning:
      return done(json{{"qube", name}, {"already_running", true}});
    case QubeState::kStarting:
    case QubeState::kStopping:
      e->waiters.push_back([this, name, depth, done] { StartChecked(name, depth, done); });
      return;
    case QubeState::kHalted:
    case QubeState::kFailed:
      break;
  }
  if (shutting_down_) return done(Fail(codes::kShuttingDown, "tesserad is shutting down"));
  if (e->held) {
    return done(Fail(codes::kBusy, name + " is busy: a volume operation on it is in progress"));
  }
  if (config_.system().Find(name) == nullptr) {
    return done(Fail(codes::kInvalidState,
                     name + " is a disposable that is not running; start a new one with "
                            "`tessera start --dispvm`"));
  }
  auto plan = backend::PlanLaunch(config_.system(), name);
  if (!plan) return done(Fail(codes::kFailed, plan.error().ToString()));
  SetState(name, *e, QubeState::kStarting);
  Launch(name, std::move(*plan), depth, std::move(done));
}

// The netvm first (its networking is wired by the network layer, an
// observer), then the launcher on a worker: template, storage, backend.
void QubeManager::Launch(const std::string& name, backend::LaunchPlan plan, int depth,
                         Done<json> done) {
  auto launch = [this, name, plan, done](ApiResult<json> netvm) {
    if (!netvm) {
      return StartFailed(name, "netvm " + *plan.netvm + ": " + netvm.error().message, done);
    }
    backend::BuildNotice notice = [this](const backend::TemplateNeed& need) {
      // On a worker: the audit log is thread-safe.
      audit_.Write({{"kind", "template"}, {"template", need.name}, {"action", "build"},
                    {"source", need.source.empty() ? "busybox" : need.source}});
    };
    Work<Result<std::unique_ptr<backend::Instance>>>(
        [&launcher = launcher_, plan, notice] { return launcher.Launch(plan, notice); },
        [this, name, done](Result<std::unique_ptr<backend::Instance>> instance) {
          if (!instance) return StartFailed(name, instance.error().ToString(), done);
          Started(name, std::move(*instance), done);
        });
  };
  if (plan.netvm) {
    StartChecked(*plan.netvm, depth + 1, launch);
  } else {
    launch(json::object());
  }
}

void QubeManager::Started(const std::string& name, std::unique_ptr<backend::Instance> instance,
                          Done<json> done) {
  Entry* e = Find(name);
  if (e == nullptr) {
    // Cannot happen: a starting qube is never forgotten. Do not leak it.
    Log(LogLevel::kError, "started qube vanished; stopping it", {{"qube", name}});
    auto owned = std::shared_ptr<backend::Instance>(std::move(instance));
    Work<Status>([owned] { return owned->Stop(std::chrono::milliseconds(0)); }, [](Status) {});
    return done(Fail(codes::kFailed, "qube " + name + " vanished while it started"));
  }
  e->instance = std::move(instance);
  auto watch = loop_.WatchFd(e->instance->exit_fd(), EPOLLIN, [this, name](uint32_t) { Exited(name); });
  if (watch) {
    e->exit_watch = std::move(*watch);
  } else {
    Log(LogLevel::kError, "cannot watch qube exit", {{"qube", name}, {"error", watch.error().ToString()}});
  }
  pid_t pid = e->instance->pid();
  SetState(name, *e, QubeState::kRunning);
  for (auto* o : observers_) o->OnRunning(name, *e->instance);
  ArmIdleTimer(name, *e);
  done(json{{"qube", name}, {"already_running", false}, {"pid", pid}});
}

void QubeManager::StartFailed(const std::string& name, std::string reason, Done<json> done) {
  Entry* e = Find(name);
  bool disposable = e != nullptr && e->record.disposable != DisposableOwner::kNone;
  Work<Status>(
      [&launcher = launcher_, name, disposable] {
        return launcher.CleanupLeftovers(name, disposable);
      },
      [this, name, reason, done, disposable](Status cleaned) {
        if (!cleaned) {
          Log(LogLevel::kWarn, "cleanup after a failed start failed",
              {{"qube", name}, {"error", cleaned.error().ToString()}});
        }
        if (Entry* now = Find(name)) {
          SetState(name, *now, QubeState::kFailed, reason);
          if (disposable) Forget(name);
        }
        for (auto* o : observers_) o->OnStopped(name);
        done(Fail(codes::kFailed, "cannot start " + name + ": " + reason));
      });
}

// ---------------------------------------------------------------------------
// Stop

void QubeManager::Stop(const std::string& name, std::chrono::milliseconds grace, Done<json> done) {
  Entry* e = Find(name);
  if (e == nullptr) return done(tl::unexpected(NoSuchQube(name)));
  switch (e->record.state) {
    case QubeState::kHalted:
      return done(json{{"qube", name}, {"already_halted", true}});
    case QubeState::kStopping:
      // Someone else is stopping it: done when they are.
      e->waiters.push_back([this, name, done] {
        const Entry* now = Find(name);
        if (now == nullptr || now->record.state == QubeState::kHalted) {
          return done(json{{"qube", name}, {"already_halted", true}});
        }
        Stop(name, options_.stop_grace, done);
      });
      return;
    case QubeState::kStarting:
      e->waiters.push_back([this, name, grace, done] { Stop(name, grace, done); });
      return;
    case QubeState::kRunning:
    case QubeState::kFailed:
      break;
  }
  bool disposable = e->record.disposable != DisposableOwner::kNone;
  for (auto* o : observers_) o->OnStopping(name);
  SetState(name, *e, QubeState::kStopping);
  // Its commands end with the qube: their sessions are told so now.
  e->channel.reset();
  e->exit_watch.Reset();
  e->idle_timer.Reset();
  std::shared_ptr<backend::Instance> instance(std::move(e->instance));
  Work<Status>(
      [&launcher = launcher_, name, instance, disposable, grace] {
        Status status = instance ? launcher.Retire(*instance, disposable, grace)
                                 : launcher.CleanupLeftovers(name, disposable);
        if (!status) {
          Log(LogLevel::kWarn, "stop failed, cleaning up",
              {{"qube", name}, {"error", status.error().ToString()}});
          status = launcher.CleanupLeftovers(name, disposable);
        }
        return status;
      },
      [this, name, done, disposable](Status status) {
        Entry* now = Find(name);
        for (auto* o : observers_) o->OnStopped(name);
        if (now == nullptr) return done(json{{"qube", name}, {"already_halted", false}});
        if (!status) {
          SetState(name, *now, QubeState::kFailed, "stop failed: " + status.error().ToString());
          return done(Fail(codes::kFailed, "stop " + name + ": " + status.error().ToString()));
        }
        SetState(name, *now, QubeState::kHalted);
        if (disposable) Forget(name);
        done(json{{"qube", name}, {"already_halted", false}});
        if (disposable) RefillPreloaded();
      });
}

// The instance exited on its own (not through Stop).
void QubeManager::Exited(const std::string& name) {
  Entry* e = Find(name);
  if (e == nullptr || e->record.state != QubeState::kRunning) return;
  bool disposable = e->record.disposable != DisposableOwner::kNone;
  for (auto* o : observers_) o->OnStopping(name);
  e->channel.reset();
  e->exit_watch.Reset();
  e->idle_timer.Reset();
  std::shared_ptr<backend::Instance> instance(std::move(e->instance));
  SetState(name, *e, QubeState::kStopping, "exited on its own");
  Work<Status>(
      [&launcher = launcher_, instance, disposable] {
        // Reaps it and removes what it left (cgroups, runtime state).
        return launcher.Retire(*instance, disposable, std::chrono::milliseconds(0));
      },
      [this, name, disposable](Status status) {
        if (!status) {
          Log(LogLevel::kWarn, "cleanup of an exited qube failed",
              {{"qube", name}, {"error", status.error().ToString()}});
        }
        for (auto* o : observers_) o->OnStopped(name);
        Entry* now = Find(name);
        if (now == nullptr) return;
        if (disposable) {
          SetState(name, *now, QubeState::kHalted, "exited");
          Forget(name);
          RefillPreloaded();
        } else {
          SetState(name, *now, QubeState::kFailed, "cell exited unexpectedly");
        }
      });
}

ApiResult<bool> QubeManager::Hold(const std::string& name) {
  Entry* e = Find(name);
  if (e == nullptr || config_.system().Find(name) == nullptr) {
    return tl::unexpected(NoSuchQube(name));
  }
  if (e->record.state != QubeState::kHalted && e->record.state != QubeState::kFailed) {
    return Fail(codes::kInvalidState, name + " is " + std::string(ToString(e->record.state)) +
                                          "; stop it first (`tessera stop " + name + "`)");
  }
  if (e->held)
    return Fail(codes::kBusy, name + " is busy: another volume operation is in progress");
  e->held = true;
  return true;
}

void QubeManager::Release(const std::string& name) {
  if (Entry* e = Find(name)) e->held = false;
}

// ---------------------------------------------------------------------------
// Description changes, startup

void QubeManager::AdoptSystem(config::System next, std::string source) {
  std::vector<std::string> removed;
  for (const auto& [name, e] : qubes_) {
    if (e.record.disposable == DisposableOwner::kNone && next.Find(name) == nullptr &&
        e.record.state == QubeState::kHalted) {
      removed.push_back(name);
    }
  }
  for (const auto& name : removed) qubes_.erase(name);
  for (const config::Qube& q : next.qubes) qubes_.try_emplace(q.name);
  config_.Adopt(std::move(next), std::move(source));
  Persist();
  for (auto* o : observers_) o->OnSystemAdopted();
  events_.Emit({{"event", "applied"}, {"source", config_.source()}});
  preload_paused_ = false;
  preload_held_ = false;
  RefillPreloaded();
}

void QubeManager::Autostart() {
  for (const config::Qube& q : config_.system().qubes) {
    if (!q.autostart) continue;
    Start(q.name, [name = q.name](ApiResult<json> r) {
      if (!r) Log(LogLevel::kError, "autostart failed", {{"qube", name}, {"error", r.error().message}});
    });
  }
}

void QubeManager::Recover() {
  RecoveryInput input;
  if (auto loaded = LoadState(state_path_); loaded) {
    input.saved = std::move(*loaded);
  } else {
    // A corrupt state file must not make us forget qubes: move it aside and
    // rely on what the backend still has, which recovery finds anyway.
    Log(LogLevel::kError, "state file unreadable; recovering from what runs",
        {{"error", loaded.error().ToString()}});
    ::rename(state_path_.c_str(), (state_path_ + ".corrupt").c_str());
  }
  next_disposable_ = input.saved.next_disposable == 0 ? 1 : input.saved.next_disposable;
  for (const config::Qube& q : config_.system().qubes) {
    input.configured.insert(q.name);
    qubes_[q.name] = Entry{};
  }
  if (auto leftovers = backend_.Leftovers(); leftovers) input.leftovers = std::move(*leftovers);
  if (auto storage = storage::ListQubeStorage(layout_); storage) input.storage = std::move(*storage);

  auto report = [&](const std::string& name, const std::string& action, const std::string& why) {
    audit_.Write({{"kind", "recovery"}, {"qube", name}, {"action", action}, {"reason", why}});
    Log(LogLevel::kInfo, "recovery", {{"qube", name}, {"action", action}, {"reason", why}});
  };
  for (const RecoveryStep& step : PlanRecovery(input)) {
    const std::string& name = step.qube;
    bool disposable = step.record.disposable != DisposableOwner::kNone || IsDisposableName(name);
    switch (step.action) {
      case RecoveryAction::kAdopt: {
        auto instance = backend_.Adopt(name);
        if (instance) {
          Entry& e = qubes_[name];
          e.record = step.record;
          e.instance = std::move(*instance);
          if (auto watch = loop_.WatchFd(e.instance->exit_fd(), EPOLLIN,
                                         [this, name](uint32_t) { Exited(name); })) {
            e.exit_watch = std::move(*watch);
          }
          report(name, "adopted", step.reason);
          for (auto* o : observers_) o->OnRunning(name, *e.instance);
          ArmIdleTimer(name, e);
          break;
        }
        (void)launcher_.CleanupLeftovers(name, step.record.disposable != DisposableOwner::kNone);
        if (step.record.disposable != DisposableOwner::kNone) {
          qubes_.erase(name);
          report(name, "destroyed", "disposable could not be re-adopted");
        } else {
          Entry& e = qubes_[name];
          e.record = step.record;
          e.record.state = QubeState::kFailed;
          e.record.reason = "could not re-adopt after daemon restart: " + instance.error().ToString();
          e.record.since = NowRfc3339();
          report(name, "failed", e.record.reason);
        }
        break;
      }
      case RecoveryAction::kCleanup: {
        auto cleaned = backend_.Cleanup(name);
        report(name, "halted", step.reason + (cleaned ? "" : " (cleanup failed: " + cleaned.error().ToString() + ")"));
        break;
      }
      case RecoveryAction::kCleanupFailed:
        (void)backend_.Cleanup(name);
        qubes_[name].record = step.record;
        break;
      case RecoveryAction::kDestroy: {
        auto destroyed = launcher_.CleanupLeftovers(name, disposable);
        qubes_.erase(name);
        report(name, "destroyed",
               step.reason + (destroyed ? "" : " (destroy failed: " + destroyed.error().ToString() + ")"));
        break;
      }
      case RecoveryAction::kForget:
        (void)backend_.Cleanup(name);
        report(name, "stopped", step.reason);
        break;
    }
  }
  // A volume image left mounted by a daemon that died between preparing a
  // qube's storage and starting it (or stopping it) is unmounted: only a
  // running qube keeps its volume open.
  for (const std::string& name : input.storage) {
    auto it = qubes_.find(name);
    if (it != qubes_.end() && it->second.record.state == QubeState::kRunning) continue;
    if (auto closed = storage::ClosePrivateVolume(layout_, name); !closed) {
      report(name, "kept", "volume could not be unmounted: " + closed.error().ToString());
    }
  }
  // The volume of a qube no longer described (removed while the daemon was
  // down, or an apply interrupted before it set the volume aside) becomes an
  // orphan, so a new qube of that name never gets its data.
  for (const std::string& name : input.storage) {
    if (input.configured.count(name) || IsDisposableName(name) || qubes_.count(name)) continue;
    auto orphan = storage::OrphanQubeStorage(layout_, name, "no longer in the system description");
    if (!orphan) {
      report(name, "kept",
             "volume of a qube no longer described could not be orphaned: " +
                 orphan.error().ToString());
    } else if (*orphan) {
      report(name, "orphaned",
             "no longer in the system description; volume kept as " + (*orphan)->id);
    }
  }
  Persist();
}

}  // namespace tessera::daemon
