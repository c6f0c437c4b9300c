#include "daemon/config_store.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/json_access.h"
#include "common/log.h"
#include "config/loader.h"

namespace tessera::daemon {

using nlohmann::json;

Result<ConfigStore> ConfigStore::Load(const ConfigSource& origin) {
  ConfigStore store;
  store.origin_ = origin;
  config::LoadOutcome outcome;
  if (origin.use_example) {
    store.daemon_config_ = std::string(config::kBuiltinExampleName);
    outcome = config::LoadSystemFromString(config::BuiltinExampleToml(), config::Format::kToml,
                                           store.daemon_config_);
  } else {
    store.daemon_config_ = origin.config_path;
    outcome = config::LoadSystem(origin.config_path);
  }
  if (!outcome.system) {
    std::string text;
    for (const auto& d : outcome.diagnostics) text += "\n  " + d.ToString();
    return Err(Error("invalid system description " + store.daemon_config_ + ":" + text, EINVAL));
  }
  store.system_ = std::move(*outcome.system);
  store.source_ = store.daemon_config_;
  // A description applied while a daemon ran with the same source survives
  // its crash or restart; one applied over another source is stale.
  auto text = ReadFile(origin.applied_path, 64u << 20);
  if (!text) return store;
  auto doc = ParseJsonObject(*text, {.what = "applied.json", .max_bytes = 64u << 20});
  std::string daemon_config = doc ? StringOr(*doc, "daemon_config", "", "applied.json").value_or("") : "";
  if (!doc || daemon_config != store.daemon_config_) {
    ::unlink(origin.applied_path.c_str());
    return store;
  }
  std::string source = StringOr(*doc, "source", "applied", "applied.json").value_or("applied");
  auto description = RequiredString(*doc, "description", "applied.json", 64u << 20);
  if (!description) return store;
  auto applied = config::LoadSystemFromString(*description, config::Format::kJson, source);
  if (applied.system) {
    store.system_ = std::move(*applied.system);
    store.source_ = source;
    Log(LogLevel::kInfo, "using the description applied earlier", {{"source", source}});
  }
  return store;
}

void ConfigStore::Adopt(config::System next, std::string source) {
  system_ = std::move(next);
  source_ = std::move(source);
  json applied = {{"daemon_config", daemon_config_},
                  {"source", source_},
                  {"description", config::ToJson(system_)}};
  if (auto s = WriteFileAtomic(origin_.applied_path, DumpJson(applied), 0600); !s) {
    Log(LogLevel::kError, "cannot record applied description", {{"error", s.error().ToString()}});
  }
}

}  // namespace tessera::daemon
