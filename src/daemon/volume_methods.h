#pragma once
// The `volume.*` admin methods (docs/DAEMON.md) and what `system.apply`
// does with volumes: a removed qube's volume is kept as an orphan, and a
// qube added under the name of an orphan gets a fresh volume plus a note.
// The file work runs on the worker pool (storage/volume_ops.h); qubes whose
// files move are held halted for the duration (QubeManager::Hold).
//
//   RegisterVolumeMethods(context);   // volume.list/purge/adopt/copy/resize

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/admin_methods.h"
#include "daemon/diff.h"
#include "storage/volume_ops.h"

namespace tessera::daemon {

void RegisterVolumeMethods(MethodContext& context);

// For every qube `diff` adds that has orphans of its name: a note saying
// that it gets a fresh volume and how to take an orphan back.
std::vector<std::string> OrphanNotes(const SystemDiff& diff,
                                     const std::vector<storage::OrphanInfo>& orphans);

// Apply, after the new description is adopted: the storage of each of
// `removed` that the manager no longer knows becomes an orphan (on the
// pool). `done` gets one entry per qube that had storage:
// {"action": "orphan", "qube", "ok", "orphan" | "error", "note"}.
void KeepRemovedVolumes(MethodContext& context, std::vector<std::string> removed,
                        std::function<void(nlohmann::json entries)> done);

// Apply, after the new description is adopted: every qube whose
// private_size changed has its volume grown to it (online while it runs,
// storage::ResizePrivateVolume); a larger volume stays as it is. `done`
// gets one entry per such qube: {"action": "grow volume", "qube", "ok",
// "note" | "error"}.
void GrowChangedVolumes(MethodContext& context, const SystemDiff& diff,
                        std::function<void(nlohmann::json entries)> done);

}  // namespace tessera::daemon
