#pragma once
// Template generations: immutable root trees of a template, numbered 1, 2, …
// An app qube mounts the generation that is current when it starts and keeps
// it for its whole run; the template qube runs on an overlay whose lower
// layer is its current generation and whose upper layer (the template's
// "changes") is persistent. Committing the changes makes a new generation
// (Qubes semantics: a template's changes reach app qubes at their next start).
//
//   Generation g = TRY(AcquireGeneration(layout, "debian", "work", GenerationRole::kApp));
//   // mount g.path read-only as the lower layer ...
//   TRY(ReleaseGenerations(layout, "work"));   // when "work" stopped
//
// On disk (docs/STORAGE.md "Template generations"):
//   S/templates/<t>/gen/<N>/         generation N, never written after publishing
//   S/templates/<t>/root -> gen/<N>  the current generation (symlink, switched by rename)
//   S/templates/<t>/changes/{upper,work}/  the template qube's overlay upper and work dirs
//   R/generations/<t>/<qube>@<N>     qube uses generation N ("app" or "template")
//
// Every function takes S/templates/.<t>.lock (the template's build lock), so
// choosing a generation, committing and collecting never interleave. A
// generation is a directory today; a NixOS erofs image later is another kind
// of Generation with the same lifecycle.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "storage/storage.h"

namespace tessera::storage {

// Who holds a generation: an app qube (or disposable) mounts it read-only; the
// template qube mounts it under its persistent changes, which are committed
// when it releases it.
enum class GenerationRole { kApp, kTemplateQube };

struct Generation {
  uint64_t number = 0;
  std::string path;  // S/templates/<t>/gen/<N>
};

struct GenerationUser {
  std::string qube;
  uint64_t generation = 0;
  GenerationRole role = GenerationRole::kApp;
};

struct GenerationStatus {
  uint64_t current = 0;
  std::vector<uint64_t> generations;  // on disk, ascending
  std::vector<GenerationUser> users;  // sorted by qube
  bool changes_pending = false;       // the template qube's changes are not committed yet
};

// S/templates/<t>/changes: upper/ and work/ of the template qube's overlay.
std::string TemplateChangesDir(const Layout& layout, const std::string& template_name);

// The current generation. A template of an older version (a plain root/
// directory) becomes generation 1 here, atomically; leftovers of an
// interrupted commit or collection are removed.
Result<Generation> CurrentGeneration(const Layout& layout, const std::string& template_name);

// Records that `qube` uses the current generation and returns it. kTemplateQube:
// when the template qube is not running (no template-qube record), changes
// left by a run that ended without a commit (a crash) are committed first;
// when it is recorded as running, its generation is kept (its changes are
// relative to it). Also makes changes/upper and changes/work. A qube may hold
// several records (a restart after a crash); ReleaseGenerations drops all.
Result<Generation> AcquireGeneration(const Layout& layout, const std::string& template_name,
                                     const std::string& qube, GenerationRole role);

// Called when `qube` has stopped: commits the template qube's changes into a
// new generation (a failed commit keeps the changes and the record, so
// nothing is lost and the next stop or start retries), drops the qube's
// records and collects generations nothing uses any more.
Status ReleaseGenerations(const Layout& layout, const std::string& qube);

struct CommitOptions {
  // Tests: runs once the new generation is built, before it is published; an
  // error aborts the commit as any failure would (crash-safety tests).
  std::function<Status()> before_publish;
  // Tests: runs after the new generation is published, before it becomes
  // current; an error aborts there (the state a crash would leave).
  std::function<Status()> before_switch;
};

// Makes the template qube's changes a new generation (current = old + changes:
// unchanged files hard-linked, changed ones copied, overlay whiteouts and
// opaque directories applied), then empties the changes. Built in a hidden
// directory, published by rename, made current by an atomic symlink switch;
// a crash leaves the old or the new generation current, never half of one.
// Refused (EBUSY) while the template qube runs: its changes are committed when
// it stops. Nothing to commit returns the current generation unchanged.
Result<Generation> CommitTemplateChanges(const Layout& layout, const std::string& template_name,
                                         const CommitOptions& options = {});

// Fills an empty directory (fd, path) with a generation's tree.
using GenerationBuilder = std::function<Status(int dir_fd, const std::string& dir_path)>;

// Builds a new generation with `build` and makes it current, with a commit's
// atomicity (built hidden, published by rename, switched by symlink), then
// collects unused ones: how a template whose source changed (a new Nix
// generation, nix_template.h) gets its new tree while running qubes keep
// theirs. Refused (EBUSY) while the template qube runs or has uncommitted
// changes: they are relative to the current generation.
Result<Generation> PublishGeneration(const Layout& layout, const std::string& template_name,
                                     const GenerationBuilder& build,
                                     const CommitOptions& options = {});

// Removes every generation that is neither current nor used by a recorded qube.
Status CollectGenerations(const Layout& layout, const std::string& template_name);
// CollectGenerations for every template (daemon start).
Status CollectAllGenerations(const Layout& layout);

Result<GenerationStatus> GetGenerationStatus(const Layout& layout,
                                             const std::string& template_name);

}  // namespace tessera::storage
