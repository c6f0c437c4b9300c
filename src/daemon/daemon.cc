#include "daemon/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cell/cell.h"
#include "common/fs.h"
#include "common/log.h"
#include "config/loader.h"
#include "daemon/audit.h"
#include "daemon/auth.h"
#include "daemon/diff.h"
#include "daemon/protocol.h"
#include "daemon/state.h"

namespace tessera::daemon {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// An error to send back to a client: a stable code and a message for people.
struct ApiError {
  std::string code;
  std::string message;
};
using ApiResult = tl::expected<json, ApiError>;
tl::unexpected<ApiError> Fail(std::string code, std::string message) {
  return tl::unexpected<ApiError>(ApiError{std::move(code), std::move(message)});
}

bool IsDisposableName(const std::string& name) {
  if (name.size() < 5 || name.compare(0, 4, "disp") != 0) return false;
  return std::all_of(name.begin() + 4, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (struct dirent* e = ::readdir(dir)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(dir);
  return names;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Levenshtein distance, for "did you mean".
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

struct Subscriber {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;
  bool dead = false;
};

// Everything the daemon knows about one qube. Guarded by Daemon::mu_.
struct Runtime {
  QubeRecord record;
  std::shared_ptr<cell::Cell> cell;
  int active_execs = 0;
  Clock::time_point idle_since = Clock::now();
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)), layout_(options_.layout) {}

  Status Init();
  int Run();

 private:
  // --- lifecycle (each takes mu_ itself; none is called with mu_ held) ---
  ApiResult StartQube(const std::string& name, int depth = 0);
  ApiResult StopQube(const std::string& name, std::chrono::milliseconds grace);
  ApiResult StartDisposable(const std::string& dvm_template, DisposableOwner owner,
                            std::string* name_out);
  Result<std::shared_ptr<cell::Cell>> LaunchCell(const std::optional<std::string>& netvm,
                                                 const cell::CellSpec& spec, int netvm_depth);
  ApiResult RunCommand(const json& params, std::vector<UniqueFd> fds, int client_fd,
                       std::function<void()>* after_reply);
  // Takes a preloaded disposable of `dvm_template` for a command, if one is ready.
  std::string TakePreloadedLocked(const std::string& dvm_template);
  void RefillPreloaded();
  Status EnsureTemplate(const std::string& name);
  void Recover();
  void Autostart();
  void Housekeeping();

  // --- state helpers (mu_ held) ---
  void SetStateLocked(const std::string& name, Runtime& rt, QubeState state,
                      std::string reason = "");
  void PersistLocked();
  ApiError NoSuchQubeLocked(const std::string& name) const;
  json QubeSummaryLocked(const std::string& name, const Runtime& rt) const;
  const config::Qube* ConfigOfLocked(const std::string& name) const { return system_.Find(name); }

  // --- admin API ---
  void ServeConnection(UniqueFd fd);
  ApiResult Dispatch(const Request& request, std::vector<UniqueFd> fds, const Peer& peer,
                     int client_fd, std::function<void()>* after_reply);
  ApiResult HandleApply(const json& params);
  ApiResult HandleLogs(const json& params);
  ApiResult HandlePrefs(const json& params);
  void StreamEvents(int fd);
  void Emit(json event);
  void AuditLifecycle(const std::string& qube, std::string_view state, const std::string& reason);

  Status LoadInitialSystem();
  Status Listen();
  static int OnAccept(sd_event_source* source, int fd, uint32_t revents, void* userdata);
  static int OnSignal(sd_event_source* source, const struct signalfd_siginfo* info,
                      void* userdata);

  DaemonOptions options_;
  storage::Layout layout_;
  std::string state_path_;
  std::string applied_path_;
  std::string config_source_;  // where the running description came from
  std::unique_ptr<AuditLog> audit_;
  UniqueFd lock_fd_;
  UniqueFd state_lock_fd_;
  UniqueFd listen_fd_;
  std::optional<gid_t> admin_gid_;

  std::mutex mu_;
  std::condition_variable cv_;  // a qube left starting/stopping
  config::System system_;
  std::map<std::string, Runtime> qubes_;
  uint32_t next_disposable_ = 1;

  std::mutex template_mu_;  // one template build at a time
  std::mutex apply_mu_;     // one apply at a time

  std::mutex subs_mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;

  std::atomic<bool> shutting_down_{false};
  std::atomic<int> connections_{0};
  std::mutex conn_mu_;
  std::set<int> open_fds_;  // for shutdown()
  std::condition_variable housekeeping_cv_;
};

// ---------------------------------------------------------------------------
// Startup

Status Daemon::LoadInitialSystem() {
  config::LoadOutcome outcome;
  if (options_.use_example) {
    config_source_ = std::string(config::kBuiltinExampleName);
    outcome = config::LoadSystemFromString(config::BuiltinExampleToml(), config::Format::kToml,
                                           config_source_);
  } else {
    config_source_ = options_.config_path;
    outcome = config::LoadSystem(options_.config_path);
  }
  if (!outcome.system) {
    std::string text;
    for (const auto& d : outcome.diagnostics) text += "\n  " + d.ToString();
    return Err(Error("invalid system description " + config_source_ + ":" + text));
  }
  system_ = std::move(*outcome.system);
  // A description applied with `tessera apply` while this daemon ran with the
  // same --config survives a daemon crash/restart (otherwise a restart would
  // silently undo the apply).
  if (PathExists(applied_path_)) {
    auto text = ReadFile(applied_path_);
    json doc = text ? json::parse(*text, nullptr, false) : json();
    if (doc.is_object() && doc.value("daemon_config", "") == config_source_ &&
        doc.contains("description") && doc["description"].is_string()) {
      auto applied = config::LoadSystemFromString(doc["description"].get<std::string>(),
                                                  config::Format::kJson,
                                                  doc.value("source", "applied"));
      if (applied.system) {
        system_ = std::move(*applied.system);
        config_source_ = doc.value("source", "applied");
        Log(LogLevel::kInfo, "using the description applied earlier",
            {{"source", config_source_}});
      }
    } else {
      ::unlink(applied_path_.c_str());  // applied over another --config: stale
    }
  }
  return Ok();
}

// Takes the exclusive flock on `lock_path` and writes our pid into it.
Result<UniqueFd> LockInstance(const std::string& lock_path, const char* what,
                              const std::string& dir) {
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Err(Error::FromErrno("open " + lock_path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    if (auto text = ReadFile(lock_path, 64); text) holder = *text;
    while (!holder.empty() && (holder.back() == '\n')) holder.pop_back();
    return Err(Error("another tesserad is already running" +
                         (holder.empty() ? std::string() : " (pid " + holder + ")") + " for " +
                         what + " directory " + dir + " (lock " + lock_path + ")",
                     EWOULDBLOCK));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) == 0) {
    (void)!::pwrite(fd.get(), pid.data(), pid.size(), 0);
  }
  return fd;
}

Status Daemon::Init() {
  if (::geteuid() != 0) {
    return Err(Error("tesserad must run as root (it creates namespaces, cgroups and mounts)",
                     EPERM));
  }
  TRY(MakeDirs(layout_.runtime_dir, 0755));
  TRY(MakeDirs(layout_.state_dir + "/daemon", 0700));
  // Single instance: exclusive flocks on R/tesserad.lock and
  // S/daemon/tesserad.lock, held for life. Either one taken means another
  // daemon owns these qubes (two daemons sharing a state dir with different
  // runtime dirs would fight over state.json and the private volumes).
  lock_fd_ = TRY(LockInstance(layout_.runtime_dir + "/tesserad.lock", "runtime", layout_.runtime_dir));
  state_lock_fd_ =
      TRY(LockInstance(layout_.state_dir + "/daemon/tesserad.lock", "state", layout_.state_dir));

  state_path_ = layout_.state_dir + "/daemon/state.json";
  applied_path_ = layout_.state_dir + "/daemon/applied.json";
  audit_ = TRY(AuditLog::Open(layout_.state_dir + "/audit"));
  TRY(LoadInitialSystem());
  admin_gid_ = LookupGroupId(options_.admin_group);
  return Ok();
}

Status Daemon::Listen() {
  std::string path = layout_.runtime_dir + "/admin.sock";
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Err(Error("socket path too long: " + path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // We hold the instance lock, so an existing socket is a stale leftover.
  ::unlink(path.c_str());
  listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_fd_) return Err(Error::FromErrno("socket"));
  // Bind with a tight umask, then widen to the configured mode: no window in
  // which the socket is more open than intended.
  mode_t old = ::umask(0077);
  int rc = ::bind(listen_fd_.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0) return Err(Error::FromErrno("bind " + path));
  if (admin_gid_ && ::chown(path.c_str(), 0, *admin_gid_) != 0) {
    return Err(Error::FromErrno("chown " + path));
  }
  mode_t mode = options_.socket_mode;
  if (!admin_gid_) mode &= static_cast<mode_t>(~0070);  // no such group: no group access
  if (::chmod(path.c_str(), mode) != 0) return Err(Error::FromErrno("chmod " + path));
  if (::listen(listen_fd_.get(), 128) != 0) return Err(Error::FromErrno("listen " + path));
  return Ok();
}

// ---------------------------------------------------------------------------
// State helpers

void Daemon::PersistLocked() {
  DaemonState state;
  state.next_disposable = next_disposable_;
  for (const auto& [name, rt] : qubes_) {
    if (rt.record.state == QubeState::kHalted && rt.record.disposable == DisposableOwner::kNone) {
      continue;
    }
    state.qubes[name] = rt.record;
  }
  if (auto status = SaveState(state_path_, state, Durability::kCrashSafe); !status) {
    Log(LogLevel::kError, "cannot write daemon state", {{"error", status.error().ToString()}});
  }
}

void Daemon::AuditLifecycle(const std::string& qube, std::string_view state,
                            const std::string& reason) {
  json record = {{"kind", "lifecycle"}, {"qube", qube}, {"state", state}};
  if (!reason.empty()) record["reason"] = reason;
  audit_->Write(record);
}

void Daemon::SetStateLocked(const std::string& name, Runtime& rt, QubeState state,
                            std::string reason) {
  rt.record.state = state;
  rt.record.reason = std::move(reason);
  rt.record.since = NowRfc3339();
  PersistLocked();
  AuditLifecycle(name, ToString(state), rt.record.reason);
  json event = {{"event", "state"}, {"qube", name}, {"state", ToString(state)},
                {"ts", rt.record.since}};
  if (!rt.record.reason.empty()) event["reason"] = rt.record.reason;
  Emit(std::move(event));
  Log(LogLevel::kInfo, "qube state",
      {{"qube", name}, {"state", ToString(state)}, {"reason", rt.record.reason}});
  cv_.notify_all();
}

ApiError Daemon::NoSuchQubeLocked(const std::string& name) const {
  std::string best;
  size_t best_distance = 3;
  for (const auto& [other, rt] : qubes_) {
    size_t d = EditDistance(name, other);
    if (d < best_distance) best_distance = d, best = other;
  }
  std::string message = "no such qube: " + name;
  if (!best.empty()) message += " (did you mean " + best + "?)";
  return {codes::kNoSuchQube, message};
}

json Daemon::QubeSummaryLocked(const std::string& name, const Runtime& rt) const {
  json q = {{"name", name}, {"state", ToString(rt.record.state)}, {"since", rt.record.since}};
  const config::Qube* c = ConfigOfLocked(name);
  if (c != nullptr) {
    q["class"] = config::ToString(c->klass);
    q["template"] = c->template_name ? *c->template_name : "-";
    q["netvm"] = c->netvm ? *c->netvm : "-";
    q["label"] = c->label;
    q["memory"] = c->memory_mib;
    q["autostart"] = c->autostart;
  } else if (const config::Qube* t = ConfigOfLocked(rt.record.dvm_template); t != nullptr) {
    q["class"] = "disposable";
    q["template"] = rt.record.dvm_template;
    q["netvm"] = t->netvm ? *t->netvm : "-";
    q["label"] = t->label;
    q["memory"] = t->memory_mib;
    q["autostart"] = false;
  }
  if (!rt.record.reason.empty()) q["reason"] = rt.record.reason;
  if (rt.cell) q["pid"] = rt.cell->init_pid();
  q["commands"] = rt.active_execs;
  return q;
}

void Daemon::Emit(json event) {
  std::string text = Dump(event);
  std::lock_guard<std::mutex> lock(subs_mu_);
  for (auto& sub : subscribers_) {
    std::lock_guard<std::mutex> sl(sub->mu);
    // A subscriber that does not keep up loses its stream rather than making
    // the daemon buffer without bound.
    if (sub->queue.size() >= 4096) {
      sub->dead = true;
    } else {
      sub->queue.push_back(text);
    }
    sub->cv.notify_all();
  }
}

// ---------------------------------------------------------------------------
// Lifecycle

Status Daemon::EnsureTemplate(const std::string& name) {
  if (name.empty()) return Ok();
  std::lock_guard<std::mutex> lock(template_mu_);
  if (storage::ReadTemplateInfo(layout_, name)) return Ok();
  std::string source;
  {
    std::lock_guard<std::mutex> l(mu_);
    const config::Qube* t = system_.Find(name);
    if (t == nullptr) return Err(Error("template " + name + " is not in the system description"));
    source = t->template_source;
  }
  storage::TemplateBuildOptions build;
  if (source.empty() || source == "busybox") {
    build.source = storage::TemplateSource::kBusybox;
  } else if (source == "debootstrap") {
    build.source = storage::TemplateSource::kDebootstrap;
  } else if (source == "host") {
    build.source = storage::TemplateSource::kHost;
  } else if (source.rfind("dir:", 0) == 0) {
    build.source = storage::TemplateSource::kDirectory;
    build.directory = source.substr(4);
  } else {
    return Err(Error("template " + name + ": unknown source " + source));
  }
  Log(LogLevel::kInfo, "building template", {{"template", name}, {"source", source}});
  audit_->Write({{"kind", "template"}, {"template", name}, {"action", "build"}, {"source", source}});
  TRY_CTX(storage::BuildTemplate(layout_, name, build), "build template " + name);
  return Ok();
}

ApiResult Daemon::StartQube(const std::string& name, int depth) {
  if (depth > 16) return Fail(codes::kFailed, "netvm chain too deep at " + name);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = qubes_.find(name);
    if (it == qubes_.end()) return tl::unexpected(NoSuchQubeLocked(name));
    QubeState s = it->second.record.state;
    if (s == QubeState::kRunning) return json{{"qube", name}, {"already_running", true}};
    if (s == QubeState::kHalted || s == QubeState::kFailed) break;
    cv_.wait(lock);  // starting/stopping: wait for the owner to finish
  }
  const config::Qube* q = ConfigOfLocked(name);
  if (q == nullptr) {
    return Fail(codes::kInvalidState,
                name + " is a disposable that is not running; start a new one with "
                       "`tessera start --dispvm`");
  }
  auto spec = cell::SpecFromConfig(system_, name);
  if (!spec) return Fail(codes::kFailed, spec.error().ToString());
  std::optional<std::string> netvm = q->netvm;
  Runtime& rt = qubes_[name];
  SetStateLocked(name, rt, QubeState::kStarting);
  lock.unlock();

  auto fail = [&](std::string reason) -> ApiResult {
    (void)cell::Cell::Cleanup(layout_, name);
    std::lock_guard<std::mutex> l(mu_);
    auto it = qubes_.find(name);
    if (it != qubes_.end()) SetStateLocked(name, it->second, QubeState::kFailed, reason);
    return Fail(codes::kFailed, "cannot start " + name + ": " + reason);
  };
  auto cell = LaunchCell(netvm, *spec, depth + 1);
  if (!cell) return fail(cell.error().ToString());

  lock.lock();
  auto& now = qubes_[name];
  now.cell = std::move(*cell);
  now.idle_since = Clock::now();
  SetStateLocked(name, now, QubeState::kRunning);
  return json{{"qube", name}, {"already_running", false}, {"pid", now.cell->init_pid()}};
}

ApiResult Daemon::StopQube(const std::string& name, std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<cell::Cell> cell;
  for (;;) {
    auto it = qubes_.find(name);
    if (it == qubes_.end()) return tl::unexpected(NoSuchQubeLocked(name));
    QubeState s = it->second.record.state;
    if (s == QubeState::kHalted) return json{{"qube", name}, {"already_halted", true}};
    if (s == QubeState::kStopping) {
      cv_.wait(lock);
      auto again = qubes_.find(name);
      if (again == qubes_.end() || again->second.record.state == QubeState::kHalted) {
        return json{{"qube", name}, {"already_halted", true}};
      }
      continue;
    }
    if (s == QubeState::kStarting) {
      cv_.wait(lock);
      continue;
    }
    cell = it->second.cell;  // running, or failed (clean up what is left)
    SetStateLocked(name, it->second, QubeState::kStopping);
    break;
  }
  DisposableOwner owner = qubes_[name].record.disposable;
  lock.unlock();

  Status status = cell ? cell->Stop(grace) : cell::Cell::Cleanup(layout_, name);
  if (!status) {
    Log(LogLevel::kWarn, "stop failed, cleaning up",
        {{"qube", name}, {"error", status.error().ToString()}});
    status = cell::Cell::Cleanup(layout_, name);
  }
  if (owner != DisposableOwner::kNone) {
    // Idempotent; Stop already did it for cells that knew they were disposable.
    if (auto destroyed = storage::DestroyQubeStorage(layout_, name); !destroyed && status) {
      status = destroyed;
    }
  }

  lock.lock();
  auto it = qubes_.find(name);
  if (it == qubes_.end()) return json{{"qube", name}, {"already_halted", false}};
  it->second.cell.reset();
  if (!status) {
    SetStateLocked(name, it->second, QubeState::kFailed,
                   "stop failed: " + status.error().ToString());
    return Fail(codes::kFailed, "stop " + name + ": " + status.error().ToString());
  }
  SetStateLocked(name, it->second, QubeState::kHalted);
  if (owner != DisposableOwner::kNone) {
    qubes_.erase(it);
    PersistLocked();
    AuditLifecycle(name, "destroyed", "");
    Emit({{"event", "destroyed"}, {"qube", name}, {"ts", NowRfc3339()}});
  }
  return json{{"qube", name}, {"already_halted", false}};
}

ApiResult Daemon::StartDisposable(const std::string& dvm_template_in, DisposableOwner owner,
                                  std::string* name_out) {
  std::unique_lock<std::mutex> lock(mu_);
  std::string dvm_template = dvm_template_in;
  if (dvm_template.empty()) {
    if (!system_.default_dispvm) {
      return Fail(codes::kInvalidConfig,
                  "no disposable template given and the system has no default_dispvm");
    }
    dvm_template = *system_.default_dispvm;
  }
  const config::Qube* t = system_.Find(dvm_template);
  if (t == nullptr) return tl::unexpected(NoSuchQubeLocked(dvm_template));
  if (t->klass != config::QubeClass::kDisposableTemplate) {
    return Fail(codes::kInvalidState, dvm_template + " is not a disposable template (class " +
                                          std::string(config::ToString(t->klass)) + ")");
  }
  std::optional<std::string> netvm = t->netvm;
  // dispNNNN, never a configured qube, a live one, or leftover storage.
  std::string name;
  for (int tries = 0; tries < 10000; ++tries) {
    uint32_t n = next_disposable_;
    next_disposable_ = next_disposable_ >= 9999 ? 1 : next_disposable_ + 1;
    std::string candidate = "disp" + std::to_string(n);
    if (qubes_.count(candidate) || system_.Find(candidate) != nullptr ||
        PathExists(layout_.QubeDir(candidate)) || PathExists(layout_.ScratchDir(candidate))) {
      continue;
    }
    name = candidate;
    break;
  }
  if (name.empty()) return Fail(codes::kFailed, "no free disposable name");
  auto spec = cell::DisposableSpecFromConfig(system_, dvm_template, name);
  if (!spec) return Fail(codes::kFailed, spec.error().ToString());
  Runtime& rt = qubes_[name];
  rt.record.disposable = owner;
  rt.record.dvm_template = dvm_template;
  // Recorded before anything is created, so a crash from here on is found
  // and cleaned up by Recover().
  SetStateLocked(name, rt, QubeState::kStarting);
  *name_out = name;
  lock.unlock();

  auto fail = [&](std::string reason) -> ApiResult {
    (void)cell::Cell::Cleanup(layout_, name);
    (void)storage::DestroyQubeStorage(layout_, name);
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = qubes_.find(name); it != qubes_.end()) {
      SetStateLocked(name, it->second, QubeState::kFailed, reason);
      qubes_.erase(it);
      PersistLocked();
      AuditLifecycle(name, "destroyed", "");
    }
    return Fail(codes::kFailed, "cannot start disposable " + name + ": " + reason);
  };
  auto cell = LaunchCell(netvm, *spec, 0);
  if (!cell) return fail(cell.error().ToString());
  lock.lock();
  auto& now = qubes_[name];
  now.cell = std::move(*cell);
  now.idle_since = Clock::now();
  if (owner == DisposableOwner::kRun) now.active_execs = 1;  // the caller's command
  SetStateLocked(name, now, QubeState::kRunning);
  return json{{"qube", name}, {"pid", now.cell->init_pid()}};
}

// The netvm first (networking itself is wired by the net layer later; the
// ordering guarantee is already the daemon's), then the template, then the
// cell. Called without mu_ held.
Result<std::shared_ptr<cell::Cell>> Daemon::LaunchCell(const std::optional<std::string>& netvm,
                                                       const cell::CellSpec& spec,
                                                       int netvm_depth) {
  if (netvm) {
    auto started = StartQube(*netvm, netvm_depth);
    if (!started) return Err(Error("netvm " + *netvm + ": " + started.error().message));
  }
  TRY(EnsureTemplate(spec.template_name));
  cell::Cell cell = TRY(cell::Cell::Start(layout_, spec));
  return std::make_shared<cell::Cell>(std::move(cell));
}

ApiResult Daemon::RunCommand(const json& params, std::vector<UniqueFd> fds, int client_fd,
                             std::function<void()>* after_reply) {
  cell::ExecRequest request;
  const json& argv = params.value("argv", json::array());
  if (!argv.is_array() || argv.empty()) return Fail(codes::kBadRequest, "qube.run needs argv");
  for (const auto& a : argv) {
    if (!a.is_string()) return Fail(codes::kBadRequest, "argv entries must be strings");
    request.argv.push_back(a.get<std::string>());
  }
  if (params.contains("env")) {
    if (!params["env"].is_array()) return Fail(codes::kBadRequest, "env must be an array");
    for (const auto& e : params["env"]) {
      if (!e.is_string()) return Fail(codes::kBadRequest, "env entries must be strings");
      request.env.push_back(e.get<std::string>());
    }
  }
  if (params.contains("user")) {
    if (!params["user"].is_string()) return Fail(codes::kBadRequest, "user must be a string");
    request.user = params["user"].get<std::string>();
  }
  if (params.contains("cwd")) {
    if (!params["cwd"].is_string()) return Fail(codes::kBadRequest, "cwd must be a string");
    request.cwd = params["cwd"].get<std::string>();
  }
  // The client's stdin, stdout, stderr, in that order (fewer = /dev/null).
  request.stdin_fd = fds.size() > 0 ? fds[0].get() : -1;
  request.stdout_fd = fds.size() > 1 ? fds[1].get() : -1;
  request.stderr_fd = fds.size() > 2 ? fds[2].get() : -1;

  std::string name;
  bool disposable = params.contains("dispvm");
  if (disposable) {
    const json& t = params["dispvm"];
    if (!t.is_string()) return Fail(codes::kBadRequest, "dispvm must be a string");
    {
      std::lock_guard<std::mutex> lock(mu_);
      name = TakePreloadedLocked(t.get<std::string>());
    }
    if (!name.empty()) {
      housekeeping_cv_.notify_all();  // refill the pool now
    } else {
      auto started = StartDisposable(t.get<std::string>(), DisposableOwner::kRun, &name);
      if (!started) return started;
    }
  } else {
    if (!params.contains("qube") || !params["qube"].is_string()) {
      return Fail(codes::kBadRequest, "qube.run needs \"qube\" or \"dispvm\"");
    }
    name = params["qube"].get<std::string>();
  }

  std::shared_ptr<cell::Cell> cell;
  bool started_now = false;
  for (int attempt = 0; attempt < 3 && !cell; ++attempt) {
    if (!disposable) {
      auto started = StartQube(name);
      if (!started) return started;
      started_now = started_now || !started->value("already_running", true);
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = qubes_.find(name);
    if (it == qubes_.end()) return tl::unexpected(NoSuchQubeLocked(name));
    if (it->second.record.state == QubeState::kRunning && it->second.cell) {
      cell = it->second.cell;
      if (!disposable) ++it->second.active_execs;
    }
  }
  if (!cell) return Fail(codes::kInvalidState, name + " stopped before the command could run");

  // A disposable's work also ends when its caller goes away (the CLI was
  // killed, the terminal closed): a watcher destroys it if the client's
  // connection hangs up while the command runs.
  std::atomic<bool> caller_gone{false};
  UniqueFd command_done(::eventfd(0, EFD_CLOEXEC));
  std::thread watcher;
  if (disposable && client_fd >= 0 && command_done) {
    watcher = std::thread([this, name, client_fd, done = command_done.get(), &caller_gone] {
      pollfd p[2] = {{client_fd, POLLRDHUP, 0}, {done, POLLIN, 0}};
      int rc;
      do {
        rc = ::poll(p, 2, -1);
      } while (rc < 0 && errno == EINTR);
      if (rc <= 0 || (p[1].revents & POLLIN) != 0) return;
      if ((p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0) return;
      caller_gone = true;
      Log(LogLevel::kInfo, "caller went away: destroying disposable", {{"qube", name}});
      auto stopped = StopQube(name, std::chrono::milliseconds(0));
      if (!stopped) {
        Log(LogLevel::kError, "disposable teardown failed",
            {{"qube", name}, {"error", stopped.error().message}});
      }
    });
  }
  auto code = cell->Exec(request);
  if (watcher.joinable()) {
    uint64_t one = 1;
    (void)!::write(command_done.get(), &one, sizeof(one));
    watcher.join();
  }
  fds.clear();  // our copies of the client's fds: close before answering

  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = qubes_.find(name); it != qubes_.end()) {
      --it->second.active_execs;
      it->second.idle_since = Clock::now();
    }
  }
  if (disposable && !caller_gone) {
    // The work ended: the disposable goes, whatever the command's result. The
    // caller gets its exit code first; the teardown is recorded in the state
    // file (stopping), so a crash in between is cleaned up by Recover().
    auto teardown = [this, name] {
      auto stopped = StopQube(name, std::chrono::milliseconds(0));
      if (!stopped) {
        Log(LogLevel::kError, "disposable teardown failed",
            {{"qube", name}, {"error", stopped.error().message}});
      }
    };
    if (after_reply != nullptr) {
      *after_reply = teardown;
    } else {
      teardown();
    }
  }
  if (!code) {
    int e = code.error().errno_value();
    std::string c = e == ENOENT ? "command_not_found" : e == EACCES ? "command_not_executable"
                                                                     : codes::kFailed;
    return Fail(c, "run in " + name + ": " + code.error().ToString());
  }
  return json{{"qube", name}, {"exit_code", *code}, {"started", started_now}};
}

std::string Daemon::TakePreloadedLocked(const std::string& dvm_template_in) {
  std::string dvm_template = dvm_template_in;
  if (dvm_template.empty() && system_.default_dispvm) dvm_template = *system_.default_dispvm;
  for (auto& [name, rt] : qubes_) {
    if (rt.record.disposable == DisposableOwner::kPreload &&
        rt.record.dvm_template == dvm_template && rt.record.state == QubeState::kRunning &&
        rt.cell) {
      rt.record.disposable = DisposableOwner::kRun;
      rt.active_execs = 1;
      PersistLocked();
      audit_->Write({{"kind", "lifecycle"}, {"qube", name}, {"action", "taken_from_preload"}});
      return name;
    }
  }
  return "";
}

// Keeps `preload-dispvm-max` disposables running per disposable template.
void Daemon::RefillPreloaded() {
  std::vector<std::string> wanted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const config::Qube& q : system_.qubes) {
      if (q.klass != config::QubeClass::kDisposableTemplate) continue;
      auto f = q.features.find("preload-dispvm-max");
      if (f == q.features.end()) continue;
      int max = std::atoi(f->second.c_str());
      int have = 0;
      for (const auto& [name, rt] : qubes_) {
        if (rt.record.disposable == DisposableOwner::kPreload && rt.record.dvm_template == q.name) {
          ++have;
        }
      }
      for (int i = have; i < std::min(max, 16); ++i) wanted.push_back(q.name);
    }
  }
  for (const auto& t : wanted) {
    if (shutting_down_) return;
    std::string name;
    auto started = StartDisposable(t, DisposableOwner::kPreload, &name);
    if (!started) {
      Log(LogLevel::kWarn, "preloading a disposable failed",
          {{"template", t}, {"error", started.error().message}});
      return;  // retried at the next tick
    }
  }
}

// Brings the in-memory state in line with what is really there after a
// restart (possibly after SIGKILL at any point): re-adopt running cells, finish
// interrupted transitions, destroy half-made disposables. Never removes the
// private volume of a configured, non-disposable qube.
void Daemon::Recover() {
  auto loaded = LoadState(state_path_);
  DaemonState state;
  if (loaded) {
    state = std::move(*loaded);
  } else {
    // A corrupt state file must not make us forget cells: move it aside and
    // rely on the scan of R/cells below, which finds every cell anyway.
    Log(LogLevel::kError, "state file unreadable; recovering from the runtime directory",
        {{"error", loaded.error().ToString()}});
    ::rename(state_path_.c_str(), (state_path_ + ".corrupt").c_str());
  }
  next_disposable_ = state.next_disposable == 0 ? 1 : state.next_disposable;
  auto report = [&](const std::string& name, const std::string& action, const std::string& why) {
    audit_->Write({{"kind", "recovery"}, {"qube", name}, {"action", action}, {"reason", why}});
    Log(LogLevel::kInfo, "recovery", {{"qube", name}, {"action", action}, {"reason", why}});
  };

  for (const config::Qube& q : system_.qubes) qubes_[q.name] = Runtime{};

  std::set<std::string> adopted;
  for (const auto& [name, record] : state.qubes) {
    bool configured = system_.Find(name) != nullptr;
    bool dynamic = record.disposable != DisposableOwner::kNone;
    if (dynamic && !configured) {
      // A disposable for one command dies with the connection that wanted it;
      // an explicitly started one lives on if its cell does.
      if (record.disposable == DisposableOwner::kStart && record.state == QubeState::kRunning) {
        if (auto cell = cell::Cell::Adopt(layout_, name); cell) {
          Runtime rt;
          rt.record = record;
          rt.cell = std::make_shared<cell::Cell>(std::move(*cell));
          qubes_[name] = std::move(rt);
          adopted.insert(name);
          report(name, "adopted", "disposable still running");
          continue;
        }
      }
      (void)cell::Cell::Cleanup(layout_, name);
      auto destroyed = storage::DestroyQubeStorage(layout_, name);
      report(name, "destroyed",
             std::string("disposable left in state ") + std::string(ToString(record.state)) +
                 (destroyed ? "" : " (destroy failed: " + destroyed.error().ToString() + ")"));
      continue;
    }
    if (!configured) {
      (void)cell::Cell::Cleanup(layout_, name);
      report(name, "stopped", "no longer in the system description");
      continue;
    }
    Runtime& rt = qubes_[name];
    switch (record.state) {
      case QubeState::kRunning: {
        if (auto cell = cell::Cell::Adopt(layout_, name); cell) {
          rt.record = record;
          rt.cell = std::make_shared<cell::Cell>(std::move(*cell));
          adopted.insert(name);
          report(name, "adopted", "running");
        } else {
          (void)cell::Cell::Cleanup(layout_, name);
          rt.record = record;
          rt.record.state = QubeState::kFailed;
          rt.record.reason = "could not re-adopt after daemon restart: " + cell.error().ToString();
          rt.record.since = NowRfc3339();
          report(name, "failed", rt.record.reason);
        }
        break;
      }
      case QubeState::kStarting:
      case QubeState::kStopping: {
        // Interrupted transition: finish it towards halted (a half-started
        // cell is not trusted). The private volume stays.
        auto cleaned = cell::Cell::Cleanup(layout_, name);
        report(name, "halted",
               std::string("interrupted while ") + std::string(ToString(record.state)) +
                   (cleaned ? "" : " (cleanup failed: " + cleaned.error().ToString() + ")"));
        break;
      }
      case QubeState::kFailed:
        (void)cell::Cell::Cleanup(layout_, name);
        rt.record = record;
        break;
      case QubeState::kHalted:
        break;
    }
  }
  // Cells the state file does not know (crash between creating and recording).
  for (const std::string& name : ListDir(layout_.runtime_dir + "/cells")) {
    if (adopted.count(name)) continue;
    if (storage::ValidateName(name).has_value() == false) continue;
    (void)cell::Cell::Cleanup(layout_, name);
    if (system_.Find(name) == nullptr && IsDisposableName(name)) {
      (void)storage::DestroyQubeStorage(layout_, name);
    }
    report(name, "cleaned", "leftover cell directory");
  }
  // Disposable storage nobody owns (crash between storage and state write).
  for (const std::string& name : ListDir(layout_.state_dir + "/qubes")) {
    if (!IsDisposableName(name) || system_.Find(name) != nullptr || qubes_.count(name)) continue;
    (void)storage::DestroyQubeStorage(layout_, name);
    report(name, "destroyed", "leftover disposable storage");
  }
  std::lock_guard<std::mutex> lock(mu_);
  PersistLocked();
}

void Daemon::Autostart() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const config::Qube& q : system_.qubes) {
      if (q.autostart) names.push_back(q.name);
    }
  }
  for (const std::string& name : names) {
    if (shutting_down_) return;
    auto result = StartQube(name);
    if (!result) {
      Log(LogLevel::kError, "autostart failed", {{"qube", name}, {"error", result.error().message}});
    }
  }
}

void Daemon::Housekeeping() {
  std::mutex wait_mu;
  while (!shutting_down_) {
    {
      std::unique_lock<std::mutex> wl(wait_mu);
      housekeeping_cv_.wait_for(wl, options_.housekeeping_interval);
    }
    if (shutting_down_) return;
    RefillPreloaded();
    std::vector<std::string> idle, died;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto now = Clock::now();
      for (auto& [name, rt] : qubes_) {
        if (rt.record.state != QubeState::kRunning || !rt.cell) continue;
        if (!rt.cell->Running()) {
          died.push_back(name);
          continue;
        }
        if (rt.active_execs > 0) continue;
        uint32_t timeout = 0;
        const config::Qube* c = ConfigOfLocked(name);
        if (rt.record.disposable == DisposableOwner::kStart) {
          const config::Qube* t = ConfigOfLocked(rt.record.dvm_template);
          timeout = t != nullptr ? t->idle_timeout : 0;
        } else if (c != nullptr && c->klass == config::QubeClass::kDisposable) {
          timeout = c->idle_timeout;
        }
        if (timeout > 0 && now - rt.idle_since >= std::chrono::seconds(timeout)) {
          idle.push_back(name);
        }
      }
    }
    for (const auto& name : died) {
      (void)cell::Cell::Cleanup(layout_, name);
      std::lock_guard<std::mutex> lock(mu_);
      auto it = qubes_.find(name);
      if (it == qubes_.end() || it->second.record.state != QubeState::kRunning) continue;
      it->second.cell.reset();
      if (it->second.record.disposable != DisposableOwner::kNone) {
        (void)storage::DestroyQubeStorage(layout_, name);
        SetStateLocked(name, it->second, QubeState::kHalted, "cell exited");
        qubes_.erase(it);
        PersistLocked();
        AuditLifecycle(name, "destroyed", "");
      } else {
        SetStateLocked(name, it->second, QubeState::kFailed, "cell exited unexpectedly");
      }
    }
    for (const auto& name : idle) {
      audit_->Write({{"kind", "lifecycle"}, {"qube", name}, {"action", "idle_timeout"}});
      (void)StopQube(name, options_.stop_grace);
    }
  }
}

// ---------------------------------------------------------------------------
// Admin API

ApiResult Daemon::HandleApply(const json& params) {
  if (!params.contains("description") || !params["description"].is_string()) {
    return Fail(codes::kBadRequest, "system.apply needs \"description\" (JSON text)");
  }
  std::string source = params.value("source", "apply");
  bool dry_run = params.value("dry_run", true);
  // Validated again here: the daemon never trusts a client's model.
  auto outcome = config::LoadSystemFromString(params["description"].get<std::string>(),
                                              config::Format::kJson, source);
  if (!outcome.system) {
    std::string text;
    for (const auto& d : outcome.diagnostics) text += (text.empty() ? "" : "\n") + d.ToString();
    return Fail(codes::kInvalidConfig, text);
  }
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  config::System next = std::move(*outcome.system);
  SystemDiff diff;
  std::map<std::string, QubeState> states;
  {
    std::lock_guard<std::mutex> lock(mu_);
    diff = DiffSystems(system_, next);
    for (const auto& [name, rt] : qubes_) states[name] = rt.record.state;
  }
  json result = {{"diff", DiffToJson(diff)}, {"applied", false}, {"actions", json::array()}};
  auto running = [&](const std::string& n) {
    auto it = states.find(n);
    return it != states.end() && it->second != QubeState::kHalted;
  };
  // The plan, in the order it runs.
  std::vector<std::pair<std::string, std::string>> plan;  // action, qube
  for (const auto& c : diff.qubes) {
    if (c.kind == ChangeKind::kRemoved && running(c.qube)) plan.push_back({"stop", c.qube});
  }
  for (const auto& c : diff.qubes) {
    if (c.kind == ChangeKind::kChanged && c.needs_restart && running(c.qube)) {
      plan.push_back({"restart", c.qube});
    }
  }
  for (const auto& c : diff.qubes) {
    const config::Qube* q = next.Find(c.qube);
    if (q == nullptr || !q->autostart) continue;
    if (c.kind == ChangeKind::kAdded || (c.kind == ChangeKind::kChanged && !running(c.qube))) {
      plan.push_back({"start", c.qube});
    }
  }
  for (const auto& [action, qube] : plan) {
    result["actions"].push_back({{"action", action}, {"qube", qube}});
  }
  if (dry_run) return result;

  audit_->Write({{"kind", "apply"}, {"source", source}, {"diff", DiffToJson(diff)}});
  json done = json::array();
  bool all_ok = true;
  auto record = [&](const std::string& action, const std::string& qube, const ApiResult& r) {
    json entry = {{"action", action}, {"qube", qube}, {"ok", r.has_value()}};
    if (!r) entry["error"] = r.error().message, all_ok = false;
    done.push_back(entry);
  };
  // 1. Stop qubes that go away (while the old description still knows them).
  for (const auto& [action, qube] : plan) {
    if (action == "stop") record(action, qube, StopQube(qube, options_.stop_grace));
  }
  // 2. Restarted qubes stop under the old description...
  for (const auto& [action, qube] : plan) {
    if (action == "restart") record("stop", qube, StopQube(qube, options_.stop_grace));
  }
  // 3. Switch descriptions.
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : diff.qubes) {
      if (c.kind == ChangeKind::kRemoved) {
        auto it = qubes_.find(c.qube);
        if (it != qubes_.end() && it->second.record.state == QubeState::kHalted) qubes_.erase(it);
      }
      if (c.kind == ChangeKind::kAdded) qubes_[c.qube] = Runtime{};
    }
    system_ = next;
    config_source_ = source;
    PersistLocked();
    json applied = {{"daemon_config", options_.use_example ? std::string(config::kBuiltinExampleName)
                                                           : options_.config_path},
                    {"source", source},
                    {"description", config::ToJson(system_)}};
    if (auto s = WriteFileAtomic(applied_path_, Dump(applied), 0600); !s) {
      Log(LogLevel::kError, "cannot record applied description", {{"error", s.error().ToString()}});
    }
  }
  Emit({{"event", "applied"}, {"source", source}, {"ts", NowRfc3339()}});
  // 4. ...and start under the new one, then new autostart qubes.
  for (const auto& [action, qube] : plan) {
    if (action == "restart") record("start", qube, StartQube(qube));
    if (action == "start") record(action, qube, StartQube(qube));
  }
  result["applied"] = true;
  result["done"] = done;
  result["ok"] = all_ok;
  return result;
}

ApiResult Daemon::HandleLogs(const json& params) {
  if (!params.contains("qube") || !params["qube"].is_string()) {
    return Fail(codes::kBadRequest, "qube.logs needs \"qube\"");
  }
  std::string name = params["qube"].get<std::string>();
  size_t limit = 200;
  if (params.contains("lines") && params["lines"].is_number_unsigned()) {
    limit = params["lines"].get<size_t>();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!qubes_.count(name) && !IsDisposableName(name)) {
      return tl::unexpected(NoSuchQubeLocked(name));
    }
  }
  std::deque<json> lines;
  for (const std::string& file : {audit_->path() + ".1", audit_->path()}) {
    auto text = ReadFile(file, 64u << 20);
    if (!text) continue;
    size_t pos = 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      std::string_view line(text->data() + pos, end - pos);
      pos = end + 1;
      // Cheap filter before parsing.
      if (line.find("\"" + name + "\"") == std::string_view::npos) continue;
      json rec = json::parse(line, nullptr, false);
      if (rec.is_discarded() || rec.value("qube", "") != name) continue;
      std::string kind = rec.value("kind", "");
      if (kind == "admin" && rec.value("result", "") == "ok" &&
          rec.value("method", "") == "qube.list") {
        continue;
      }
      lines.push_back(std::move(rec));
      if (lines.size() > limit) lines.pop_front();
    }
  }
  return json{{"qube", name}, {"lines", json(std::vector<json>(lines.begin(), lines.end()))}};
}

json QubePrefs(const config::Qube& q) {
  json fw = json::array();
  for (const auto& r : q.firewall) {
    json rule = {{"action", config::ToString(r.action)}};
    if (!r.dsthost.empty()) rule["dsthost"] = r.dsthost;
    if (r.proto != config::FirewallProto::kAny) rule["proto"] = config::ToString(r.proto);
    if (r.dstports) {
      rule["dstports"] = std::to_string(r.dstports->first) + "-" + std::to_string(r.dstports->last);
    }
    if (r.icmptype) rule["icmptype"] = *r.icmptype;
    if (r.specialtarget_dns) rule["specialtarget"] = "dns";
    if (!r.comment.empty()) rule["comment"] = r.comment;
    fw.push_back(rule);
  }
  return {{"name", q.name},
          {"class", config::ToString(q.klass)},
          {"uuid", q.uuid},
          {"template", q.template_name ? json(*q.template_name) : json(nullptr)},
          {"netvm", q.netvm ? json(*q.netvm) : json("none")},
          {"provides_network", q.provides_network},
          {"label", q.label},
          {"memory", q.memory_mib},
          {"cpus", q.cpus},
          {"tags", q.tags},
          {"autostart", q.autostart},
          {"idle_timeout", q.idle_timeout},
          {"default_dispvm", q.default_dispvm ? json(*q.default_dispvm) : json(nullptr)},
          {"features", q.features},
          {"backend", config::ToString(q.backend)},
          {"source", q.template_source},
          {"firewall", fw}};
}

ApiResult Daemon::HandlePrefs(const json& params) {
  if (!params.contains("qube") || !params["qube"].is_string()) {
    return Fail(codes::kBadRequest, "qube.prefs needs \"qube\"");
  }
  std::string name = params["qube"].get<std::string>();
  std::lock_guard<std::mutex> lock(mu_);
  const config::Qube* q = ConfigOfLocked(name);
  if (q == nullptr) {
    auto it = qubes_.find(name);
    if (it == qubes_.end()) return tl::unexpected(NoSuchQubeLocked(name));
    return json{{"name", name}, {"class", "disposable"},
                {"template", it->second.record.dvm_template}, {"source_description", config_source_}};
  }
  json prefs = QubePrefs(*q);
  if (params.contains("key")) {
    if (!params["key"].is_string()) return Fail(codes::kBadRequest, "key must be a string");
    std::string key = params["key"].get<std::string>();
    if (!prefs.contains(key)) return Fail(codes::kBadRequest, "no such property: " + key);
    if (params.contains("value")) {
      // The description is declarative: every property comes from it, so an
      // imperative write would be undone by the next apply or restart.
      return Fail(codes::kNotSupported,
                  "property " + key + " of " + name +
                      " comes from the declarative system description (" + config_source_ +
                      "); change it there and run `tessera apply FILE`");
    }
    return json{{key, prefs[key]}};
  }
  return prefs;
}

void Daemon::StreamEvents(int fd) {
  auto sub = std::make_shared<Subscriber>();
  {
    std::lock_guard<std::mutex> lock(subs_mu_);
    subscribers_.push_back(sub);
  }
  while (!shutting_down_) {
    std::deque<std::string> batch;
    {
      std::unique_lock<std::mutex> lock(sub->mu);
      sub->cv.wait_for(lock, std::chrono::milliseconds(500),
                       [&] { return !sub->queue.empty() || sub->dead; });
      if (sub->dead) break;
      batch.swap(sub->queue);
    }
    bool ok = true;
    for (const auto& text : batch) {
      if (!WriteFrame(fd, text)) {
        ok = false;
        break;
      }
    }
    if (!ok) break;
    // A subscriber that hung up shows as readable-EOF.
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLIN))) break;
  }
  std::lock_guard<std::mutex> lock(subs_mu_);
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), sub),
                     subscribers_.end());
}

// What the audit log keeps of a request's parameters: enough to say what was
// asked, bounded in size, never file contents.
json SummarizeParams(const std::string& method, const json& params) {
  json out = json::object();
  for (const char* key : {"qube", "dispvm", "key", "value", "source", "dry_run", "force", "all"}) {
    if (params.contains(key)) out[key] = params[key];
  }
  if (method == "qube.run" && params.contains("argv") && params["argv"].is_array()) {
    std::string cmd;
    for (const auto& a : params["argv"]) {
      if (a.is_string()) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
    }
    if (cmd.size() > 256) cmd = cmd.substr(0, 256) + "...";
    out["argv"] = cmd;
  }
  return out;
}

ApiResult Daemon::Dispatch(const Request& request, std::vector<UniqueFd> fds, const Peer& peer,
                           int client_fd, std::function<void()>* after_reply) {
  const json& p = request.params;
  const std::string& m = request.method;
  auto qube_param = [&]() -> tl::expected<std::string, ApiError> {
    if (!p.contains("qube") || !p["qube"].is_string()) {
      return tl::unexpected(ApiError{codes::kBadRequest, m + " needs \"qube\""});
    }
    return p["qube"].get<std::string>();
  };
  if (m == "daemon.info") {
    std::lock_guard<std::mutex> lock(mu_);
    return json{{"version", "0.1.0"},     {"protocol", kProtocolVersion},
                {"pid", ::getpid()},      {"description", config_source_},
                {"state_dir", layout_.state_dir}, {"runtime_dir", layout_.runtime_dir},
                {"audit_log", audit_->path()},    {"peer_uid", peer.uid}};
  }
  if (m == "qube.list") {
    std::lock_guard<std::mutex> lock(mu_);
    json list = json::array();
    for (const auto& [name, rt] : qubes_) list.push_back(QubeSummaryLocked(name, rt));
    return json{{"qubes", list}};
  }
  if (m == "qube.start") {
    if (p.contains("dispvm")) {
      if (!p["dispvm"].is_string()) return Fail(codes::kBadRequest, "dispvm must be a string");
      std::string name;
      return StartDisposable(p["dispvm"].get<std::string>(), DisposableOwner::kStart, &name);
    }
    auto q = qube_param();
    if (!q) return tl::unexpected(q.error());
    return StartQube(*q);
  }
  if (m == "qube.stop" || m == "qube.kill") {
    std::chrono::milliseconds grace =
        m == "qube.kill" ? std::chrono::milliseconds(0) : options_.stop_grace;
    if (p.value("all", false)) {
      std::vector<std::string> names;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [name, rt] : qubes_) {
          if (rt.record.state != QubeState::kHalted) names.push_back(name);
        }
      }
      // Qubes before the netvms they use: stop non-network qubes first.
      std::stable_partition(names.begin(), names.end(), [&](const std::string& n) {
        std::lock_guard<std::mutex> lock(mu_);
        const config::Qube* c = ConfigOfLocked(n);
        return c == nullptr || !c->provides_network;
      });
      json stopped = json::array();
      for (const auto& n : names) {
        auto r = StopQube(n, grace);
        stopped.push_back({{"qube", n}, {"ok", r.has_value()}});
      }
      return json{{"stopped", stopped}};
    }
    auto q = qube_param();
    if (!q) return tl::unexpected(q.error());
    return StopQube(*q, grace);
  }
  if (m == "qube.restart") {
    auto q = qube_param();
    if (!q) return tl::unexpected(q.error());
    auto stopped = StopQube(*q, options_.stop_grace);
    if (!stopped) return stopped;
    return StartQube(*q);
  }
  if (m == "qube.run") return RunCommand(p, std::move(fds), client_fd, after_reply);
  if (m == "qube.logs") return HandleLogs(p);
  if (m == "qube.prefs") return HandlePrefs(p);
  if (m == "system.apply") return HandleApply(p);
  if (m == "system.get") {
    std::lock_guard<std::mutex> lock(mu_);
    return json{{"source", config_source_}, {"description", config::ToJson(system_)}};
  }
  return Fail(codes::kUnknownMethod, "unknown method: " + m);
}

void Daemon::ServeConnection(UniqueFd fd) {
  auto peer = GetPeer(fd.get());
  json who = peer ? json{{"uid", peer->uid}, {"gid", peer->gid}, {"pid", peer->pid}}
                  : json{{"uid", nullptr}};
  if (!peer || !IsAuthorized(*peer, admin_gid_)) {
    // Read (briefly) what was asked, for the record, then refuse.
    struct timeval tv = {2, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string method;
    int64_t id = 0;
    if (auto frame = ReadFrame(fd.get(), 64u << 10); frame) {
      if (auto req = ParseRequest(frame->payload); req) method = req->method, id = req->id;
    }
    audit_->Write({{"kind", "admin"}, {"peer", who}, {"method", method}, {"result", "denied"},
                   {"reason", "not root and not in admin group " + options_.admin_group}});
    Log(LogLevel::kWarn, "admin request refused",
        {{"uid", peer ? std::to_string(peer->uid) : "?"}, {"method", method}});
    (void)WriteFrame(fd.get(),
                     Dump(ErrorResponse(id, codes::kPermissionDenied,
                                        "permission denied: tessera administration needs root "
                                        "or membership in group " + options_.admin_group)));
    return;
  }
  for (;;) {
    auto frame = ReadFrame(fd.get());
    if (!frame) {
      if (frame.error().message() != "eof") {
        audit_->Write({{"kind", "admin"}, {"peer", who}, {"result", "protocol_error"},
                       {"error", frame.error().ToString()}});
      }
      return;
    }
    auto request = ParseRequest(frame->payload);
    if (!request) {
      audit_->Write({{"kind", "admin"}, {"peer", who}, {"result", codes::kBadRequest},
                     {"error", request.error().message()}});
      (void)WriteFrame(fd.get(), Dump(ErrorResponse(0, codes::kBadRequest, request.error().message())));
      continue;
    }
    if (request->method != "qube.run" && !frame->fds.empty()) frame->fds.clear();
    json audit_entry = {{"kind", "admin"}, {"peer", who}, {"method", request->method},
                        {"params", SummarizeParams(request->method, request->params)}};
    if (request->params.contains("qube") && request->params["qube"].is_string()) {
      audit_entry["qube"] = request->params["qube"];
    }
    if (request->method == "events.subscribe") {
      audit_entry["result"] = "ok";
      audit_->Write(audit_entry);
      if (!WriteFrame(fd.get(), Dump(OkResponse(request->id, {{"subscribed", true}})))) return;
      StreamEvents(fd.get());
      return;
    }
    std::function<void()> after_reply;
    ApiResult result = Dispatch(*request, std::move(frame->fds), *peer, fd.get(), &after_reply);
    json response;
    if (result) {
      audit_entry["result"] = "ok";
      if (result->contains("qube") && (*result)["qube"].is_string()) {
        audit_entry["qube"] = (*result)["qube"];
      }
      if (result->contains("exit_code")) audit_entry["exit_code"] = (*result)["exit_code"];
      response = OkResponse(request->id, std::move(*result));
    } else {
      audit_entry["result"] = result.error().code;
      audit_entry["error"] = result.error().message;
      response = ErrorResponse(request->id, result.error().code, result.error().message);
    }
    // Listing is frequent and read-only: audited only when it fails, so the
    // log stays about actions.
    if (request->method != "qube.list" || !result) audit_->Write(audit_entry);
    bool sent = WriteFrame(fd.get(), Dump(response)).has_value();
    // Work that the caller need not wait for (a disposable's teardown) runs
    // after the reply, still on this counted connection thread.
    if (after_reply) after_reply();
    if (!sent) return;
  }
}

int Daemon::OnAccept(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (;;) {
    int client = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR) continue;
      return 0;  // EAGAIN or transient; the loop calls us again
    }
    {
      std::lock_guard<std::mutex> lock(self->conn_mu_);
      self->open_fds_.insert(client);
    }
    ++self->connections_;
    std::thread([self, client] {
      self->ServeConnection(UniqueFd(client));
      {
        std::lock_guard<std::mutex> lock(self->conn_mu_);
        self->open_fds_.erase(client);
      }
      --self->connections_;
    }).detach();
  }
}

int Daemon::OnSignal(sd_event_source* source, const struct signalfd_siginfo*, void*) {
  sd_event_exit(sd_event_source_get_event(source), 0);
  return 0;
}

int Daemon::Run() {
  // Signals are handled by the loop; block them before any thread exists so
  // every thread inherits the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Recover();
  if (auto status = Listen(); !status) {
    std::fprintf(stderr, "tesserad: %s\n", status.error().ToString().c_str());
    return 1;
  }
  audit_->Write({{"kind", "daemon"}, {"action", "start"}, {"pid", ::getpid()},
                 {"description", config_source_}});
  Log(LogLevel::kInfo, "tesserad ready",
      {{"socket", layout_.runtime_dir + "/admin.sock"}, {"description", config_source_}});

  sd_event* event = nullptr;
  if (sd_event_new(&event) < 0) {
    std::fprintf(stderr, "tesserad: sd_event_new failed\n");
    return 1;
  }
  sd_event_add_signal(event, nullptr, SIGTERM, &Daemon::OnSignal, this);
  sd_event_add_signal(event, nullptr, SIGINT, &Daemon::OnSignal, this);
  sd_event_add_io(event, nullptr, listen_fd_.get(), EPOLLIN, &Daemon::OnAccept, this);

  std::thread housekeeping([this] { Housekeeping(); });
  std::thread autostart;
  if (options_.autostart) autostart = std::thread([this] { Autostart(); });
  if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, "READY=1");

  int rc = sd_event_loop(event);
  sd_event_unref(event);

  // Shutdown: stop accepting, wake every connection, leave cells running
  // (they are re-adopted by the next tesserad; `tessera stop --all` stops them).
  if (std::getenv("NOTIFY_SOCKET") != nullptr) sd_notify(0, "STOPPING=1");
  shutting_down_ = true;
  std::string sock = layout_.runtime_dir + "/admin.sock";
  ::unlink(sock.c_str());
  listen_fd_.reset();
  housekeeping_cv_.notify_all();
  housekeeping.join();
  if (autostart.joinable()) autostart.join();
  {
    std::lock_guard<std::mutex> lock(conn_mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  audit_->Write({{"kind", "daemon"}, {"action", "stop"}, {"pid", ::getpid()}});
  for (int i = 0; i < 100 && connections_ > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (connections_ > 0) {
    // Threads still blocked in a command inside a qube: the state on disk is
    // consistent (commands are not state), so leave without unwinding them.
    std::fflush(nullptr);
    ::_exit(rc < 0 ? 1 : 0);
  }
  return rc < 0 ? 1 : 0;
}

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
