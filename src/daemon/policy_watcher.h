#pragma once
// The qrexec policy in force in tesserad: loaded from the system
// description's policy_dir (plus R/policy.d and the compat directory) at
// start, and again whenever a file in those directories changes (inotify,
// settled for 100 ms so an editor's save is read once), or in a directory
// the last load read through !include, !include-dir or !include-service. A reload that fails
// keeps the last good policy (policy::PolicyHolder) and is reported in the
// audit log and as a `policy` event with every error; before any policy
// loaded, every call is denied. Never fails open.
//
//   PolicyWatcher policies(loop, audit, events);
//   policies.Watch(DirsFor(system, layout));      // at start and after an apply
//   std::shared_ptr<const policy::Policy> p = policies.Current();  // null: deny

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/audit.h"
#include "daemon/event_bus.h"
#include "daemon/event_loop.h"
#include "policy/holder.h"
#include "policy/policy.h"

namespace tessera::daemon {

class PolicyWatcher {
 public:
  PolicyWatcher(EventLoop& loop, AuditLog& audit, EventBus& events,
                std::chrono::milliseconds settle = std::chrono::milliseconds(100))
      : loop_(loop), audit_(audit), events_(events), settle_(settle) {}

  // Loads from `dirs` now and watches them from here on (replacing earlier
  // directories: an apply may change policy_dir).
  void Watch(policy::PolicyDirs dirs);
  // The policy in force; null when none ever loaded (every call is denied).
  std::shared_ptr<const policy::Policy> Current() const { return holder_.Current(); }
  // Errors of the last failed load (empty after a good one).
  std::vector<policy::LoadError> LastErrors() const { return holder_.LastErrors(); }
  // For daemon.info: the directory, rule count, generation, last errors.
  nlohmann::json Info() const;
  const policy::PolicyDirs& dirs() const { return dirs_; }

 private:
  void Rewatch();
  void OnInotify();
  void Load(const char* why);

  EventLoop& loop_;
  AuditLog& audit_;
  EventBus& events_;
  std::chrono::milliseconds settle_;
  policy::PolicyDirs dirs_;
  std::set<std::string> included_dirs_;  // outside dirs_, read by the last load
  // Watches of a missing directory's parent: the names that matter there.
  std::map<int, std::set<std::string>> waiting_for_;
  policy::PolicyHolder holder_;
  UniqueFd inotify_;
  EventLoop::Watch watch_;
  EventLoop::Timer settle_timer_;
};

// The directories tesserad reads: the description's policy_dir, the runtime
// directory's policy.d (searched first; may be missing) and the compat
// directory of !compat-4.0.
policy::PolicyDirs PolicyDirsFor(const std::string& policy_dir, const std::string& runtime_dir);

}  // namespace tessera::daemon
