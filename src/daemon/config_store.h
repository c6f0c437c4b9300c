#pragma once
// The system description tesserad runs: loaded at start (from --config, the
// built-in example, or what `tessera apply` adopted over the same source
// earlier, kept in S/daemon/applied.json), replaced by apply.
//
//   ConfigStore store = TRY(ConfigStore::Load({.config_path = "/etc/tessera/system.toml",
//                                              .applied_path = S + "/daemon/applied.json"}));
//   const config::System& system = store.system();
//   store.Adopt(std::move(next), "apply:/home/me/system.toml");

#include <string>

#include "common/error.h"
#include "config/model.h"

namespace tessera::daemon {

struct ConfigSource {
  bool use_example = false;   // the built-in example instead of a file
  std::string config_path;    // else this file (TOML, JSON or Nix)
  std::string applied_path;   // S/daemon/applied.json
};

class ConfigStore {
 public:
  // An invalid description is an error listing every diagnostic.
  static Result<ConfigStore> Load(const ConfigSource& source);

  const config::System& system() const { return system_; }
  // Where the running description came from (a path, "builtin:example",
  // "apply:..."): shown by `daemon.info` and audited.
  const std::string& source() const { return source_; }

  // Makes `next` the running description and records it, so that a daemon
  // restarted with the same source keeps it (a crash must not undo an apply).
  void Adopt(config::System next, std::string source);

 private:
  ConfigSource origin_;
  std::string daemon_config_;  // what the daemon was started with
  std::string source_;
  config::System system_;
};

}  // namespace tessera::daemon
