#pragma once
// What `tessera apply` would change: the difference between the running system
// description and a new one, qube by qube, and which changes need a restart of
// a running qube. Pure (no I/O), so it is unit-tested on config::System values.
//
//   SystemDiff diff = DiffSystems(running, proposed);
//   std::printf("%s", FormatDiff(diff).c_str());

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

struct SystemDiff {
  std::vector<QubeChange> qubes;          // by name
  std::vector<FieldChange> system_fields; // policy_dir, default_dispvm
  bool empty() const { return qubes.empty() && system_fields.empty(); }
};

SystemDiff DiffSystems(const config::System& before, const config::System& after);
std::string_view ToString(ChangeKind kind);
nlohmann::json DiffToJson(const SystemDiff& diff);

}  // namespace tessera::daemon
