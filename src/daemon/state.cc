#include "daemon/state.h"

#include <sys/stat.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace tessera::daemon {

using nlohmann::json;

std::string_view ToString(QubeState state) {
  switch (state) {
    case QubeState::kHalted: return "halted";
    case QubeState::kStarting: return "starting";
    case QubeState::kRunning: return "running";
    case QubeState::kStopping: return "stopping";
    case QubeState::kFailed: return "failed";
  }
  return "unknown";
}

std::optional<QubeState> ParseQubeState(std::string_view text) {
  for (QubeState s : {QubeState::kHalted, QubeState::kStarting, QubeState::kRunning,
                      QubeState::kStopping, QubeState::kFailed}) {
    if (ToString(s) == text) return s;
  }
  return std::nullopt;
}

namespace {
std::string_view OwnerName(DisposableOwner owner) {
  switch (owner) {
    case DisposableOwner::kNone: return "";
    case DisposableOwner::kRun: return "run";
    case DisposableOwner::kStart: return "start";
    case DisposableOwner::kPreload: return "preload";
  }
  return "";
}
}  // namespace

std::string StateToJson(const DaemonState& state) {
  json qubes = json::object();
  for (const auto& [name, r] : state.qubes) {
    json q = {{"state", ToString(r.state)}, {"since", r.since}};
    if (!r.reason.empty()) q["reason"] = r.reason;
    if (r.disposable != DisposableOwner::kNone) {
      q["disposable"] = OwnerName(r.disposable);
      q["dvm_template"] = r.dvm_template;
    }
    qubes[name] = std::move(q);
  }
  json doc = {{"format", state.format}, {"next_disposable", state.next_disposable},
              {"qubes", std::move(qubes)}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<DaemonState> StateFromJson(const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Err(Error("state file is not a JSON object"));
  DaemonState state;
  if (doc.value("format", 0) != 1) return Err(Error("state file has an unknown format"));
  const json& next = doc.value("next_disposable", json(1));
  if (!next.is_number_unsigned()) return Err(Error("state file: bad next_disposable"));
  state.next_disposable = next.get<uint32_t>();
  const json& qubes = doc.value("qubes", json::object());
  if (!qubes.is_object()) return Err(Error("state file: \"qubes\" must be an object"));
  for (const auto& [name, q] : qubes.items()) {
    if (!q.is_object()) return Err(Error("state file: qube " + name + " is not an object"));
    QubeRecord r;
    auto s = ParseQubeState(q.value("state", ""));
    if (!s) return Err(Error("state file: qube " + name + " has an unknown state"));
    r.state = *s;
    r.reason = q.value("reason", "");
    r.since = q.value("since", "");
    std::string owner = q.value("disposable", "");
    if (owner == "run") r.disposable = DisposableOwner::kRun;
    else if (owner == "start") r.disposable = DisposableOwner::kStart;
    else if (owner == "preload") r.disposable = DisposableOwner::kPreload;
    else if (!owner.empty()) return Err(Error("state file: qube " + name + ": bad disposable"));
    r.dvm_template = q.value("dvm_template", "");
    state.qubes[name] = std::move(r);
  }
  return state;
}

Result<DaemonState> LoadState(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return DaemonState{};
  std::string text = TRY(ReadFile(path, 16u << 20));
  return TRY_CTX(StateFromJson(text), path);
}

Status SaveState(const std::string& path, const DaemonState& state, Durability durability) {
  TRY(MakeDirs(DirName(path), 0700));
  return WriteFileAtomic(path, StateToJson(state), 0600, durability);
}

}  // namespace tessera::daemon
