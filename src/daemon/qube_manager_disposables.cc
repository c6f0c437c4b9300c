// QubeManager, continued: disposables (fresh names, start, the preloaded
// pool) and the sessions that keep a qube busy (agent channels, idle
// timeouts). The state machine itself is in qube_manager.cc.

#include <sys/stat.h>

#include "common/log.h"
#include "daemon/qube_manager.h"

namespace tessera::daemon {

using nlohmann::json;
namespace codes = wire::codes;

namespace {

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// Disposables

std::string QubeManager::FreshDisposableName() {
  auto leftovers = backend_.Leftovers();
  for (int tries = 0; tries < 10000; ++tries) {
    uint32_t n = next_disposable_;
    next_disposable_ = next_disposable_ >= 9999 ? 1 : next_disposable_ + 1;
    std::string candidate = "disp" + std::to_string(n);
    bool taken = qubes_.count(candidate) != 0 || config_.system().Find(candidate) != nullptr ||
                 PathExists(layout_.QubeDir(candidate)) ||
                 (leftovers &&
                  std::find(leftovers->begin(), leftovers->end(), candidate) != leftovers->end());
    if (!taken) return candidate;
  }
  return "";
}

void QubeManager::StartDisposable(const std::string& dvm_in, DisposableOwner owner,
                                  Done<std::string> done) {
  if (shutting_down_) return done(Fail(codes::kShuttingDown, "tesserad is shutting down"));
  if (owner != DisposableOwner::kPreload) preload_paused_ = false;  // disposables are wanted again
  const config::System& system = config_.system();
  std::string dvm = dvm_in;
  if (dvm.empty()) {
    if (!system.default_dispvm) {
      return done(Fail(codes::kInvalidConfig,
                       "no disposable template given and the system has no default_dispvm"));
    }
    dvm = *system.default_dispvm;
  }
  const config::Qube* t = system.Find(dvm);
  if (t == nullptr) {
    ApiError e = NoSuchQube(dvm);
    return done(tl::unexpected(e));
  }
  if (t->klass != config::QubeClass::kDisposableTemplate) {
    return done(Fail(codes::kInvalidState, dvm + " is not a disposable template (class " +
                                               std::string(config::ToString(t->klass)) + ")"));
  }
  std::string name = FreshDisposableName();
  if (name.empty()) return done(Fail(codes::kFailed, "no free disposable name"));
  auto plan = backend::PlanDisposable(system, dvm, name);
  if (!plan) return done(Fail(codes::kFailed, plan.error().ToString()));
  Entry& e = qubes_[name];
  e.record.disposable = owner;
  e.record.dvm_template = dvm;
  // Recorded before anything is created: a crash from here on is found and
  // cleaned up by recovery.
  SetState(name, e, QubeState::kStarting);
  Launch(name, std::move(*plan), 0, [name, done](ApiResult<json> started) {
    if (!started) {
      return done(Fail(started.error().code,
                       "cannot start disposable " + name + ": " + started.error().message));
    }
    done(name);
  });
}

std::string QubeManager::TakePreloaded(const std::string& dvm_in) {
  preload_paused_ = false;  // a disposable is wanted again
  std::string dvm = dvm_in;
  if (dvm.empty() && config_.system().default_dispvm) dvm = *config_.system().default_dispvm;
  for (auto& [name, e] : qubes_) {
    if (e.record.disposable == DisposableOwner::kPreload && e.record.dvm_template == dvm &&
        e.record.state == QubeState::kRunning && e.instance && !e.leaving_pool) {
      e.record.disposable = DisposableOwner::kRun;
      Persist();
      audit_.Write({{"kind", "lifecycle"}, {"qube", name}, {"action", "taken_from_preload"}});
      std::string taken = name;
      loop_.Post([this] { RefillPreloaded(); });
      return taken;
    }
  }
  return "";
}

bool QubeManager::BeginApply(const std::vector<std::string>& leaving) {
  if (applying_) return false;
  applying_ = true;
  preload_held_ = true;
  for (const auto& name : leaving) {
    Entry* e = Find(name);
    if (e != nullptr && e->record.disposable == DisposableOwner::kPreload) e->leaving_pool = true;
  }
  return true;
}

std::vector<RunningDisposable> QubeManager::Disposables() const {
  std::vector<RunningDisposable> out;
  for (const auto& [name, e] : qubes_) {
    if (e.record.disposable == DisposableOwner::kNone || e.record.state == QubeState::kHalted) {
      continue;
    }
    out.push_back({name, e.record.dvm_template, e.record.disposable == DisposableOwner::kPreload});
  }
  return out;
}

void QubeManager::RefillPreloaded() {
  if (shutting_down_ || refilling_ || preload_paused_ || preload_held_) return;
  for (const config::Qube& q : config_.system().qubes) {
    int max = PreloadCount(q);
    if (max == 0) continue;
    int have = 0;
    for (const auto& [name, e] : qubes_) {
      if (e.record.disposable == DisposableOwner::kPreload && e.record.dvm_template == q.name &&
          !e.leaving_pool) {
        ++have;
      }
    }
    if (have >= max) continue;
    // One at a time: the next is started when this one settles.
    refilling_ = true;
    StartDisposable(q.name, DisposableOwner::kPreload,
                    [this, dvm = q.name](ApiResult<std::string> r) {
                      refilling_ = false;
                      if (!r) {
                        Log(LogLevel::kWarn, "preloading a disposable failed",
                            {{"template", dvm}, {"error", r.error().message}});
                        // Retried later rather than in a tight loop.
                        refill_retry_ = loop_.After(std::chrono::seconds(5), [this] {
                          refill_retry_.Reset();
                          RefillPreloaded();
                        });
                        return;
                      }
                      RefillPreloaded();
                    });
    return;
  }
}

// ---------------------------------------------------------------------------
// Channels, sessions, idle timeouts

Result<AgentChannel*> QubeManager::Channel(const std::string& name) {
  Entry* e = Find(name);
  if (e == nullptr || e->record.state != QubeState::kRunning || !e->instance) {
    return Err(Error("qube " + name + " is not running", ESRCH));
  }
  if (!e->channel || e->channel->broken()) {
    UniqueFd fd = TRY_CTX(e->instance->OpenChannel(), "qube " + name + ": agent channel");
    uint64_t generation = ++e->channel_generation;
    e->channel =
        TRY(AgentChannel::Create(loop_, name, std::move(fd), options_.channel_limits,
                                 [this, name, generation](std::string reason) {
                                   Entry* now = Find(name);
                                   if (now == nullptr || now->channel_generation != generation)
                                     return;
                                   audit_.Write({{"kind", "agent"},
                                                 {"qube", name},
                                                 {"action", "channel_closed"},
                                                 {"reason", reason}});
                                   now->channel.reset();
                                 }));
    for (auto* o : observers_) o->OnChannel(name, *e->channel);
  }
  return e->channel.get();
}

void QubeManager::SessionStarted(const std::string& name) {
  if (Entry* e = Find(name)) {
    ++e->sessions;
    e->idle_timer.Reset();
  }
}

void QubeManager::SessionEnded(const std::string& name) {
  Entry* e = Find(name);
  if (e == nullptr) return;
  if (e->sessions > 0) --e->sessions;
  if (e->sessions == 0) ArmIdleTimer(name, *e);
}

uint32_t QubeManager::IdleTimeout(const std::string& name, const Entry& e) const {
  const config::System& system = config_.system();
  if (e.record.disposable == DisposableOwner::kStart) {
    const config::Qube* t = system.Find(e.record.dvm_template);
    return t != nullptr ? t->idle_timeout : 0;
  }
  const config::Qube* c = system.Find(name);
  if (c != nullptr && c->klass == config::QubeClass::kDisposable) return c->idle_timeout;
  return 0;
}

void QubeManager::ArmIdleTimer(const std::string& name, Entry& e) {
  e.idle_timer.Reset();
  uint32_t timeout = IdleTimeout(name, e);
  if (timeout == 0 || e.sessions > 0 || e.record.state != QubeState::kRunning) return;
  e.idle_timer = loop_.After(std::chrono::seconds(timeout), [this, name] {
    Entry* now = Find(name);
    if (now == nullptr || now->sessions > 0 || now->record.state != QubeState::kRunning) return;
    now->idle_timer.Reset();
    audit_.Write({{"kind", "lifecycle"}, {"qube", name}, {"action", "idle_timeout"}});
    Stop(name, options_.stop_grace, [](ApiResult<json>) {});
  });
}

}  // namespace tessera::daemon
