#pragma once
// What `tessera apply` would change: the difference between the running system
// description and a new one, qube by qube, which changes need a restart of a
// running qube, and what happens to the running disposables (a preloaded one
// was made from its disposable template's settings, so it follows them). Pure
// (no I/O), so it is unit-tested on config::System values.
//
//   SystemDiff diff = DiffSystems(running, proposed, manager_disposables);
//   json shown = DiffToJson(diff);

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/model.h"

namespace tessera::daemon {

enum class ChangeKind { kAdded, kRemoved, kChanged };

struct FieldChange {
  std::string field;     // "memory", "netvm", ...
  std::string before;    // display text
  std::string after;
  bool needs_restart = false;
};

struct QubeChange {
  std::string qube;
  ChangeKind kind = ChangeKind::kChanged;
  std::vector<FieldChange> fields;  // kChanged only
  bool needs_restart = false;       // kChanged: any field needs a restart
};

// A disposable that exists now (runtime state, not part of a description).
struct RunningDisposable {
  std::string name;
  std::string dvm_template;
  bool preloaded = false;  // waiting in the pool: no command has had it yet
};

// What an apply does to the disposables of one disposable template. A
// preloaded disposable is the description's (its template's settings and
// preload count), so it follows it: replaced when a setting it inherits
// changes, stopped when its template goes or the count is lowered. One in
// use keeps its settings until its command ends, unless its template goes.
struct DisposableChange {
  std::string dvm_template;
  std::vector<std::string> replaced;  // preloaded: stopped, and the pool makes new ones
  std::vector<std::string> stopped;   // preloaded: stopped for good (template gone, count lowered)
  std::vector<std::string> in_use_stopped;  // in use, of a template that goes
  std::vector<std::string> in_use_kept;     // in use: old settings until their command ends
  int added = 0;                            // more to preload (the count was raised)
  std::string reason;                       // "memory changed", "template removed", ...
};

struct SystemDiff {
  std::vector<QubeChange> qubes;              // by name
  std::vector<FieldChange> system_fields;     // policy_dir, default_dispvm
  std::vector<DisposableChange> disposables;  // by template
  bool empty() const { return qubes.empty() && system_fields.empty() && disposables.empty(); }
};

// `running`: the disposables that exist now (none for a pure description diff).
SystemDiff DiffSystems(const config::System& before, const config::System& after,
                       const std::vector<RunningDisposable>& running = {});
// How many disposables `q` keeps preloaded: its feature preload-dispvm-max,
// 0..16 (0 for a qube that is not a disposable template).
int PreloadCount(const config::Qube& q);
std::string_view ToString(ChangeKind kind);
nlohmann::json DiffToJson(const SystemDiff& diff);

}  // namespace tessera::daemon
