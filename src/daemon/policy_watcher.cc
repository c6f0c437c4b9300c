#include "daemon/policy_watcher.h"

#include <sys/inotify.h>
#include <sys/stat.h>

#include "common/log.h"
#include "policy/loader.h"

namespace tessera::daemon {

using nlohmann::json;

namespace {

constexpr uint32_t kDirEvents = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

// The directory itself when it exists, else its nearest existing parent (so
// that its creation is noticed).
std::string ExistingDirOrParent(std::string dir) {
  while (!dir.empty() && dir != "/") {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return dir;
    size_t slash = dir.find_last_of('/');
    if (slash == std::string::npos) return "";
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  return dir;
}

json ErrorsJson(const std::vector<policy::LoadError>& errors) {
  json out = json::array();
  for (const auto& e : errors) {
    if (out.size() >= 20) break;  // the first ones say enough; all are in `policy check`
    out.push_back(e.ToPathString());
  }
  return out;
}

// The host's files, noting every directory a load read from.
class RecordingFileSystem : public policy::RealFileSystem {
 public:
  Result<std::string> Read(const std::string& path) const override {
    size_t slash = path.find_last_of('/');
    if (slash != std::string::npos) dirs_.insert(slash == 0 ? "/" : path.substr(0, slash));
    return RealFileSystem::Read(path);
  }
  Result<std::vector<std::string>> List(const std::string& dir) const override {
    dirs_.insert(dir);
    return RealFileSystem::List(dir);
  }
  const std::set<std::string>& dirs() const { return dirs_; }

 private:
  mutable std::set<std::string> dirs_;
};

}  // namespace

policy::PolicyDirs PolicyDirsFor(const std::string& policy_dir, const std::string& runtime_dir) {
  policy::PolicyDirs dirs;
  if (!policy_dir.empty()) dirs.policy_dir = policy_dir;
  dirs.runtime_dir = runtime_dir + "/policy.d";
  return dirs;
}

void PolicyWatcher::Watch(policy::PolicyDirs dirs) {
  bool changed = dirs.policy_dir != dirs_.policy_dir || dirs.runtime_dir != dirs_.runtime_dir ||
                 dirs.compat_dir != dirs_.compat_dir || !inotify_;
  dirs_ = std::move(dirs);
  if (changed) Rewatch();
  Load(changed ? "load" : "reload");
}

void PolicyWatcher::Rewatch() {
  watch_.Reset();
  inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) {
    Log(LogLevel::kError, "policy changes are not watched (inotify)",
        {{"error", std::strerror(errno)}});
    return;
  }
  std::vector<std::string> dirs = {dirs_.policy_dir, dirs_.runtime_dir, dirs_.compat_dir};
  dirs.insert(dirs.end(), included_dirs_.begin(), included_dirs_.end());
  waiting_for_.clear();
  std::set<int> whole;  // watches of a policy directory itself: every event counts
  for (const std::string& dir : dirs) {
    std::string watched = ExistingDirOrParent(dir);
    if (watched.empty()) continue;
    int wd = ::inotify_add_watch(inotify_.get(), watched.c_str(), kDirEvents);
    if (wd < 0) {
      Log(LogLevel::kWarn, "policy directory not watched",
          {{"dir", watched}, {"error", std::strerror(errno)}});
      continue;
    }
    if (watched == dir) {
      whole.insert(wd);
      continue;
    }
    // A parent of a missing directory: only the next component's events
    // count (the runtime directory, say, sees far more than that).
    size_t start = watched == "/" ? 1 : watched.size() + 1;
    waiting_for_[wd].insert(dir.substr(start, dir.find('/', start) - start));
  }
  for (int wd : whole) waiting_for_.erase(wd);
  auto watch = loop_.WatchFd(inotify_.get(), EPOLLIN, [this](uint32_t) { OnInotify(); });
  if (!watch) {
    Log(LogLevel::kError, "policy changes are not watched", {{"error", watch.error().ToString()}});
    return;
  }
  watch_ = std::move(*watch);
}

void PolicyWatcher::OnInotify() {
  alignas(inotify_event) char buf[8192];
  bool structure = false;  // a watched directory appeared, went or moved
  bool relevant = false;
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof(buf));
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      auto* ev = reinterpret_cast<inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      constexpr uint32_t kSelf = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW;
      if (auto w = waiting_for_.find(ev->wd); w != waiting_for_.end() && (ev->mask & kSelf) == 0 &&
                                              (ev->len == 0 || w->second.count(ev->name) == 0)) {
        continue;  // not the directory it waits for
      }
      relevant = true;
      if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW)) != 0 ||
          ((ev->mask & IN_ISDIR) != 0)) {
        structure = true;
      }
    }
  }
  if (!relevant) return;
  if (structure) {
    // Rewatch after the settle time: the directories may still be moving.
    settle_timer_ = loop_.After(settle_, [this] {
      Rewatch();
      Load("reload");
    });
    return;
  }
  if (!settle_timer_) {
    settle_timer_ = loop_.After(settle_, [this] {
      settle_timer_.Reset();
      Load("reload");
    });
  }
}

void PolicyWatcher::Load(const char* why) {
  settle_timer_.Reset();
  RecordingFileSystem fs;
  auto loaded = policy::LoadPolicyDirs(dirs_, fs);
  // Files included from elsewhere are watched too (where they are now).
  std::set<std::string> included;
  for (const std::string& dir : fs.dirs()) {
    if (dir != dirs_.policy_dir && dir != dirs_.runtime_dir && dir != dirs_.compat_dir) {
      included.insert(dir);
    }
  }
  if (included != included_dirs_) {
    included_dirs_ = std::move(included);
    Rewatch();
    // An edit between the read above and the new watches would go unseen:
    // read once more after them.
    settle_timer_ = loop_.After(settle_, [this] {
      settle_timer_.Reset();
      Load("reload");
    });
  }
  size_t rules = loaded ? loaded->rules().size() : 0;
  size_t files = loaded ? loaded->files().size() : 0;
  std::vector<policy::LoadError> errors =
      loaded ? std::vector<policy::LoadError>{} : loaded.error();
  holder_.Reload(std::move(loaded));
  json record = {{"kind", "policy"}, {"dir", dirs_.policy_dir}};
  json event = {{"event", "policy"}, {"dir", dirs_.policy_dir}};
  if (errors.empty()) {
    record["action"] = why;
    record["rules"] = rules;
    record["files"] = files;
    event["ok"] = true;
    event["rules"] = rules;
    Log(LogLevel::kInfo, "policy loaded",
        {{"dir", dirs_.policy_dir}, {"rules", std::to_string(rules)}});
  } else {
    bool kept = holder_.Current() != nullptr;
    record["action"] = std::string(why) + "_failed";
    record["errors"] = ErrorsJson(errors);
    record["in_force"] = kept ? "last good policy" : "none: every call is denied";
    event["ok"] = false;
    event["errors"] = record["errors"];
    event["in_force"] = record["in_force"];
    Log(LogLevel::kError, "policy not loaded",
        {{"dir", dirs_.policy_dir},
         {"error", errors.front().ToPathString()},
         {"in_force", record["in_force"].get<std::string>()}});
  }
  audit_.Write(std::move(record));
  events_.Emit(std::move(event));
}

json PolicyWatcher::Info() const {
  auto current = holder_.Current();
  json info = {{"dir", dirs_.policy_dir},
               {"loaded", current != nullptr},
               {"rules", current ? current->rules().size() : 0},
               {"generation", holder_.generation()}};
  auto errors = holder_.LastErrors();
  info["errors"] = ErrorsJson(errors);
  return info;
}

}  // namespace tessera::daemon
