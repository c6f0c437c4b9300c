#pragma once
// The lifecycle state of every qube tesserad knows, and its on-disk form
// S/daemon/state.json (written atomically at every transition, read back at
// start to recover after a crash).
//
//   DaemonState state = TRY(LoadState(path));   // empty state if missing
//   state.qubes["work"].state = QubeState::kRunning;
//   TRY(SaveState(path, state));

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/fs.h"

namespace tessera::daemon {

// halted -> starting -> running -> stopping -> halted; failed(reason) from
// starting (start error) or running (the cell died or could not be re-adopted).
enum class QubeState { kHalted, kStarting, kRunning, kStopping, kFailed };

std::string_view ToString(QubeState state);
std::optional<QubeState> ParseQubeState(std::string_view text);

// Why a disposable exists: `kRun` = one command (destroyed when it ends),
// `kStart` = started explicitly (destroyed at stop or after idle_timeout),
// `kPreload` = started ahead of time for the next `run --dispvm` (feature
// preload-dispvm-max on the disposable template, as in Qubes 4.3).
enum class DisposableOwner { kNone, kRun, kStart, kPreload };

struct QubeRecord {
  QubeState state = QubeState::kHalted;
  std::string reason;              // kFailed: why
  DisposableOwner disposable = DisposableOwner::kNone;  // dynamic dispNNNN only
  std::string dvm_template;        // disposable: its disposable template
  std::string since;               // RFC 3339 time of the last transition
  bool operator==(const QubeRecord&) const = default;
};

struct DaemonState {
  int format = 1;
  std::map<std::string, QubeRecord> qubes;
  uint32_t next_disposable = 1;    // dispNNNN counter (wraps at 9999)
  bool operator==(const DaemonState&) const = default;
};

std::string StateToJson(const DaemonState& state);
Result<DaemonState> StateFromJson(const std::string& text);
// A missing file is an empty state; a corrupt one is an error (the daemon then
// refuses to start rather than forget running cells).
Result<DaemonState> LoadState(const std::string& path);
// Durability (common/fs.h): the daemon uses kCrashSafe on every transition
// under its lock: after a host crash the runtime directory (and so every
// cell) is gone anyway and an old or unreadable state file is recovered from
// (see Daemon::Recover).
using ::tessera::Durability;
Status SaveState(const std::string& path, const DaemonState& state,
                 Durability durability = Durability::kSynced);

}  // namespace tessera::daemon
