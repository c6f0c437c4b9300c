// Template generations (generations.h): the current one, which qube uses
// which, commits of the template qube's changes, collection of unused ones.
//
// Invariants, each kept by one atomic step:
// - gen/<N> is complete once it has its name: it is built in gen/.tmp-XXXXXX,
//   synced, and renamed into place (RENAME_NOREPLACE); nothing writes it after.
// - root -> gen/<N> names the current generation; it is switched by renaming a
//   new symlink over it, so a reader sees the old or the new one.
// - changes/ is emptied only after the generation holding it is current, by
//   exchanging it with an empty one (RENAME_EXCHANGE). A crash in between
//   leaves changes that are already in the current generation; applying them
//   again gives the same tree (an upper entry fully decides its path), so the
//   next commit is harmless.
// - a record R/generations/<t>/<qube>@<N> exists before the qube mounts N and
//   is dropped only after it stopped; collection keeps every recorded N.
// Everything runs under the template's flock (S/templates/.<t>.lock), which
// BuildTemplate and RemoveTemplate take too. Leftovers of a crash (hidden
// .tmp-/.old- names) are removed by the next call that takes the lock.

#include "storage/generations.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <set>
#include <tuple>

#include "common/fs.h"
#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generation_internal.h"
#include "storage/internal.h"
#include "storage/nix_template.h"

namespace tessera::storage {
namespace {

constexpr const char* kGenDir = "gen";
constexpr const char* kCurrentLink = "root";  // the path older versions used for the tree
constexpr const char* kChangesDir = "changes";
constexpr const char* kAppRole = "app\n";
constexpr const char* kTemplateRole = "template\n";

std::string TemplatesDir(const Layout& layout) { return layout.state_dir + "/templates"; }
std::string RecordsDir(const Layout& layout) { return layout.runtime_dir + "/generations"; }
std::string RecordDir(const Layout& layout, const std::string& t) {
  return RecordsDir(layout) + "/" + t;
}

// "12" -> 12; anything but a plain decimal without leading zeros -> 0.
uint64_t ParseNumber(const std::string& s) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return 0;
  if (s.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::strtoull(s.c_str(), nullptr, 10);
}

// One template's directories, opened under its lock.
struct Opened {
  std::string dir_path;  // S/templates/<t>
  std::string gen_path;  // S/templates/<t>/gen
  UniqueFd dir;
  UniqueFd gen;
  UniqueFd lock;
  std::string name;
};

Result<Opened> OpenTemplate(const Layout& layout, const std::string& t) {
  TRY(ValidateName(t, "template"));
  TRY(ReadTemplateInfo(layout, t));  // ENOENT naming it when it does not exist
  Opened o;
  o.name = t;
  UniqueFd templates = TRY(internal::OpenDir(TemplatesDir(layout)));
  o.lock = TRY(internal::LockFileAt(templates.get(), "." + t + ".lock",
                                    TemplatesDir(layout) + "/." + t + ".lock"));
  o.dir_path = layout.TemplateDir(t);
  o.dir = TRY(internal::OpenDirAt(templates.get(), t, o.dir_path));
  o.gen_path = o.dir_path + "/" + kGenDir;
  TRY(internal::EnsureDirAt(o.dir.get(), kGenDir, 0700, ::geteuid(), ::getegid(), o.gen_path));
  o.gen = TRY(internal::OpenDirAt(o.dir.get(), kGenDir, o.gen_path));
  TRY(internal::RemoveLeftovers(o.gen_path, {".tmp-", ".old-"}));
  TRY(internal::RemoveLeftovers(o.dir_path, {".root.tmp-", ".changes.tmp-"}));
  return o;
}

Generation GenerationAt(const Opened& o, uint64_t n) {
  return Generation{n, o.gen_path + "/" + std::to_string(n)};
}

Result<std::vector<uint64_t>> ListNumbers(const Opened& o) {
  std::vector<uint64_t> out;
  TRY(internal::ForEachEntry(o.gen.get(), o.gen_path, [&](const std::string& name) {
    if (uint64_t n = ParseNumber(name); n != 0) out.push_back(n);
    return Ok();
  }));
  std::sort(out.begin(), out.end());
  return out;
}

Status SwitchCurrent(const Opened& o, uint64_t n) {
  std::string target = std::string(kGenDir) + "/" + std::to_string(n);
  std::string tmp = std::string(".root.tmp-") + std::to_string(n);
  std::string link = o.dir_path + "/" + kCurrentLink;
  TRY(Syscall("symlink " + o.dir_path + "/" + tmp,
              [&] { return ::symlinkat(target.c_str(), o.dir.get(), tmp.c_str()); }));
  TRY(Syscall("switch " + link + " to " + target,
              [&] { return ::renameat(o.dir.get(), tmp.c_str(), o.dir.get(), kCurrentLink); }));
  TRY(Syscall("fsync " + o.dir_path, [&] { return ::fsync(o.dir.get()); }));
  return Ok();
}

// A template of an older version: its root/ directory becomes gen/1.
Status Migrate(const Opened& o) {
  if (!TRY(ListNumbers(o)).empty()) {
    return Err(Error(o.dir_path + ": has both a root/ directory and generations in " + o.gen_path +
                         " (refusing to guess which is the template)",
                     EEXIST));
  }
  std::string dest = o.gen_path + "/1";
  TRY(Syscall("rename " + o.dir_path + "/root to " + dest, [&] {
    return ::renameat2(o.dir.get(), kCurrentLink, o.gen.get(), "1", RENAME_NOREPLACE);
  }));
  TRY(Syscall("fsync " + o.gen_path, [&] { return ::fsync(o.gen.get()); }));
  TRY(SwitchCurrent(o, 1));
  Log(LogLevel::kInfo, "template moved to generation 1", {{"template", o.name}});
  return Ok();
}

Result<Generation> CurrentLocked(const Opened& o) {
  std::string link = o.dir_path + "/" + kCurrentLink;
  struct stat st {};
  if (::fstatat(o.dir.get(), kCurrentLink, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return Err(Error::FromErrno("stat " + link));
    // A crash between a migration's two renames: the newest one is the template.
    std::vector<uint64_t> numbers = TRY(ListNumbers(o));
    if (numbers.empty()) {
      return Err(Error(
          "template " + o.name + " has no tree (neither " + link + " nor " + o.gen_path + "/<N>)",
          ENOENT));
    }
    TRY(SwitchCurrent(o, numbers.back()));
    return GenerationAt(o, numbers.back());
  }
  if (S_ISDIR(st.st_mode)) {
    TRY(Migrate(o));
    return GenerationAt(o, 1);
  }
  if (!S_ISLNK(st.st_mode)) return Err(Error(link + ": neither a directory nor a symlink", EINVAL));
  char buf[64];
  ssize_t n = ::readlinkat(o.dir.get(), kCurrentLink, buf, sizeof(buf) - 1);
  if (n < 0) return Err(Error::FromErrno("readlink " + link));
  std::string target(buf, static_cast<size_t>(n));
  std::string prefix = std::string(kGenDir) + "/";
  uint64_t number = target.rfind(prefix, 0) == 0 ? ParseNumber(target.substr(prefix.size())) : 0;
  if (number == 0) {
    return Err(
        Error(link + " -> " + target + ": expected gen/<N> (refusing to follow it)", EINVAL));
  }
  Generation g = GenerationAt(o, number);
  struct stat gst {};
  if (::fstatat(o.gen.get(), std::to_string(number).c_str(), &gst, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISDIR(gst.st_mode)) {
    return Err(Error(link + " -> " + target + ": the generation is missing", ENOENT));
  }
  return g;
}

// ---- records: R/generations/<t>/<qube>@<N> ---------------------------------

struct Record {
  GenerationUser user;
  std::string file;  // name in the record directory
};

Result<std::vector<Record>> ReadRecords(const Layout& layout, const std::string& t) {
  std::string dir = RecordDir(layout, t);
  std::vector<Record> out;
  auto dir_fd = internal::OpenDir(dir);
  if (!dir_fd) {
    if (dir_fd.error().errno_value() == ENOENT) return out;
    return Err(std::move(dir_fd).error());
  }
  std::vector<std::string> names;
  TRY(internal::ForEachEntry(dir_fd->get(), dir, [&](const std::string& name) {
    names.push_back(name);
    return Ok();
  }));
  for (const std::string& name : names) {
    size_t at = name.find('@');
    if (at == std::string::npos) continue;  // a temporary file of a write
    std::string qube = name.substr(0, at);
    uint64_t n = ParseNumber(name.substr(at + 1));
    if (!IsValidName(qube) || n == 0) continue;
    auto text = ReadFile(dir + "/" + name, 64);
    if (!text) {
      if (text.error().errno_value() == ENOENT) continue;  // released meanwhile
      return Err(std::move(text).error());
    }
    GenerationRole role;
    if (*text == kAppRole) {
      role = GenerationRole::kApp;
    } else if (*text == kTemplateRole) {
      role = GenerationRole::kTemplateQube;
    } else {
      return Err(Error(dir + "/" + name + ": expected \"app\" or \"template\"", EINVAL));
    }
    out.push_back(Record{GenerationUser{qube, n, role}, name});
  }
  std::sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
    return std::tie(a.user.qube, a.user.generation) < std::tie(b.user.qube, b.user.generation);
  });
  return out;
}

Status WriteRecord(const Layout& layout, const std::string& t, const std::string& qube, uint64_t n,
                   GenerationRole role) {
  std::string dir = RecordDir(layout, t);
  // The runtime dir as everything else makes it (its admin socket is for a
  // group), then root-only below it.
  TRY(MakeDirs(layout.runtime_dir, 0755));
  TRY(MakeDirs(dir, 0700));
  // kCrashSafe: the runtime dir does not outlive a host crash, and neither does the qube.
  return WriteFileAtomic(dir + "/" + qube + "@" + std::to_string(n),
                         role == GenerationRole::kApp ? kAppRole : kTemplateRole, 0600,
                         Durability::kCrashSafe);
}

// ---- changes -------------------------------------------------------------------

Result<bool> ChangesPending(const Opened& o) {
  std::string upper = o.dir_path + "/" + kChangesDir + "/upper";
  auto fd = internal::OpenDir(upper, O_NOFOLLOW);
  if (!fd) {
    if (fd.error().errno_value() == ENOENT) return false;
    return Err(std::move(fd).error());
  }
  bool any = false;
  TRY(internal::ForEachEntry(fd->get(), upper, [&](const std::string&) {
    any = true;
    return Ok();
  }));
  return any;
}

// Fills the empty directory fd (path) with upper/ (owner and mode of the
// generation's root, which the overlay shows as `/`) and work/.
Status MakeChangesTree(int fd, const std::string& path, const Generation& g) {
  struct stat root {};
  TRY(Syscall("stat " + g.path, [&] { return ::stat(g.path.c_str(), &root); }));
  TRY(internal::EnsureDirAt(fd, "upper", root.st_mode & 07777, root.st_uid, root.st_gid,
                            path + "/upper"));
  TRY(internal::EnsureDirAt(fd, "work", 0700, 0, 0, path + "/work"));
  return Ok();
}

Status EnsureChanges(const Opened& o, const Generation& g) {
  std::string path = o.dir_path + "/" + kChangesDir;
  TRY(internal::EnsureDirAt(o.dir.get(), kChangesDir, 0700, 0, 0, path));
  UniqueFd fd = TRY(internal::OpenDirAt(o.dir.get(), kChangesDir, path));
  return MakeChangesTree(fd.get(), path, g);
}

// Replaces changes/ by an empty tree for generation g, atomically.
Status ClearChanges(const Opened& o, const Generation& g) {
  std::string tmpl = o.dir_path + "/.changes.tmp-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + o.dir_path));
  std::string tmp = tmpl;
  ScopeGuard cleanup([&] { (void)RemoveTree(tmp); });
  UniqueFd tmp_fd = TRY(internal::OpenDir(tmp, O_NOFOLLOW));
  TRY(MakeChangesTree(tmp_fd.get(), tmp, g));
  std::string base = tmp.substr(o.dir_path.size() + 1);
  TRY(Syscall("exchange " + tmp + " with " + o.dir_path + "/" + kChangesDir, [&] {
    return ::renameat2(o.dir.get(), base.c_str(), o.dir.get(), kChangesDir, RENAME_EXCHANGE);
  }));
  // `tmp` now holds the committed changes; the guard removes them.
  ::fsync(o.dir.get());
  return Ok();
}

// Builds a new generation above every number on disk with `build` (which
// fills the empty directory it is given) and makes it current.
Result<Generation> PublishLocked(const Opened& o, const GenerationBuilder& build,
                                 const CommitOptions& options) {
  std::vector<uint64_t> numbers = TRY(ListNumbers(o));
  // Above every number on disk: a generation published but not yet current
  // (a crash between the two steps) keeps its number until it is collected.
  uint64_t next = numbers.empty() ? 1 : numbers.back() + 1;
  std::string tmpl = o.gen_path + "/.tmp-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + o.gen_path));
  std::string tmp = tmpl;
  ScopeGuard cleanup([&] {
    auto removed = RemoveTree(tmp);
    if (!removed) {
      Log(LogLevel::kWarn, "could not remove a failed generation",
          {{"path", tmp}, {"error", removed.error().ToString()}});
    }
  });
  UniqueFd out = TRY(internal::OpenDir(tmp, O_NOFOLLOW));
  TRY(build(out.get(), tmp));
  if (options.before_publish) TRY(options.before_publish());
  TRY(Syscall("syncfs " + tmp, [&] { return ::syncfs(out.get()); }));
  std::string base = tmp.substr(o.gen_path.size() + 1);
  std::string name = std::to_string(next);
  TRY(Syscall("rename " + tmp + " to " + o.gen_path + "/" + name, [&] {
    return ::renameat2(o.gen.get(), base.c_str(), o.gen.get(), name.c_str(), RENAME_NOREPLACE);
  }));
  cleanup.Dismiss();
  TRY(Syscall("fsync " + o.gen_path, [&] { return ::fsync(o.gen.get()); }));
  if (options.before_switch) TRY(options.before_switch());
  TRY(SwitchCurrent(o, next));
  return GenerationAt(o, next);
}

Result<Generation> CommitLocked(const Opened& o, const CommitOptions& options) {
  Generation current = TRY(CurrentLocked(o));
  if (!TRY(ChangesPending(o))) return current;
  std::string upper_path = o.dir_path + "/" + kChangesDir + "/upper";
  auto merge = [&](int out, const std::string& out_path) -> Status {
    UniqueFd lower =
        TRY(internal::OpenDirAt(o.gen.get(), std::to_string(current.number), current.path));
    UniqueFd upper = TRY(internal::OpenDir(upper_path, O_NOFOLLOW));
    return internal::MergeOverlayLayers(lower.get(), upper.get(), out, current.path, upper_path,
                                        out_path);
  };
  Generation made = TRY(PublishLocked(o, merge, options));
  TRY(ClearChanges(o, made));
  Log(LogLevel::kInfo, "template changes committed",
      {{"template", o.name},
       {"generation", std::to_string(made.number)},
       {"from", std::to_string(current.number)}});
  return made;
}

Status CollectLocked(const Layout& layout, const Opened& o) {
  Generation current = TRY(CurrentLocked(o));
  std::set<uint64_t> used;
  for (const Record& r : TRY(ReadRecords(layout, o.name))) used.insert(r.user.generation);
  for (uint64_t n : TRY(ListNumbers(o))) {
    if (n == current.number || used.count(n) != 0) continue;
    std::string name = std::to_string(n);
    std::string aside = ".old-" + name;
    // Out of its name first: a crash midway leaves a hidden leftover, never a
    // half-deleted gen/<N>.
    TRY(Syscall("rename " + o.gen_path + "/" + name + " aside",
                [&] { return ::renameat(o.gen.get(), name.c_str(), o.gen.get(), aside.c_str()); }));
    TRY_CTX(RemoveTree(o.gen_path + "/" + aside), "collect generation " + name + " of " + o.name);
    Log(LogLevel::kInfo, "template generation collected",
        {{"template", o.name}, {"generation", name}});
  }
  return Ok();
}

Status CheckUnused(const Layout& layout, const std::string& t, const std::string& action) {
  std::vector<Record> records = TRY(ReadRecords(layout, t));
  if (records.empty()) return Ok();
  std::string users;
  for (const Record& r : records) {
    if (!users.empty()) users += ", ";
    users += r.user.qube + " (" +
             (r.user.role == GenerationRole::kTemplateQube ? "template qube, " : "") +
             "generation " + std::to_string(r.user.generation) + ")";
  }
  return Err(Error("template " + t + " is in use by " + users + "; stop " +
                       (records.size() == 1 ? "it" : "them") + " before you " + action + " it",
                   EBUSY));
}

}  // namespace

namespace internal {
Status CheckTemplateUnused(const Layout& layout, const std::string& t, const std::string& action) {
  return CheckUnused(layout, t, action);
}
}  // namespace internal

std::string TemplateChangesDir(const Layout& layout, const std::string& t) {
  return layout.TemplateDir(t) + "/" + kChangesDir;
}

Result<Generation> CurrentGeneration(const Layout& layout, const std::string& t) {
  Opened o = TRY(OpenTemplate(layout, t));
  return CurrentLocked(o);
}

Result<Generation> AcquireGeneration(const Layout& layout, const std::string& t,
                                     const std::string& qube, GenerationRole role) {
  TRY(ValidateName(qube));
  Opened o = TRY(OpenTemplate(layout, t));
  Generation g = TRY(CurrentLocked(o));
  if (role == GenerationRole::kTemplateQube) {
    std::optional<uint64_t> running;
    for (const Record& r : TRY(ReadRecords(layout, t))) {
      if (r.user.qube == qube && r.user.role == GenerationRole::kTemplateQube)
        running = r.user.generation;
    }
    if (running) {
      // Running, or ended without a release: its changes are relative to it.
      g = GenerationAt(o, *running);
    } else {
      g = TRY_CTX(CommitLocked(o, {}), "commit the changes left by the last run of " + t);
    }
    TRY(EnsureChanges(o, g));
  }
  TRY(WriteRecord(layout, t, qube, g.number, role));
  return g;
}

Status ReleaseGenerations(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  std::string dir = RecordsDir(layout);
  auto dir_fd = internal::OpenDir(dir);
  if (!dir_fd) {
    // No records (after a reboot): a GC root may still be left.
    if (dir_fd.error().errno_value() == ENOENT) return ReleaseNixRoot(layout, qube);
    return Err(std::move(dir_fd).error());
  }
  std::vector<std::string> templates;
  TRY(internal::ForEachEntry(dir_fd->get(), dir, [&](const std::string& name) {
    if (IsValidName(name)) templates.push_back(name);
    return Ok();
  }));
  Status first = Ok();
  for (const std::string& t : templates) {
    auto released = [&]() -> Status {
      std::vector<Record> mine;
      for (Record& r : TRY(ReadRecords(layout, t))) {
        if (r.user.qube == qube) mine.push_back(std::move(r));
      }
      if (mine.empty()) return Ok();
      auto opened = OpenTemplate(layout, t);
      if (!opened && opened.error().errno_value() != ENOENT) return Err(std::move(opened).error());
      bool own = std::any_of(mine.begin(), mine.end(), [](const Record& r) {
        return r.user.role == GenerationRole::kTemplateQube;
      });
      if (opened && own) {
        // On failure the record stays: the changes stay tied to their
        // generation, and the next start or stop of the template qube retries.
        TRY_CTX(CommitLocked(*opened, {}), "commit the changes of template qube " + qube);
      }
      for (const Record& r : mine) {
        std::string path = RecordDir(layout, t) + "/" + r.file;
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
          return Err(Error::FromErrno("unlink " + path));
      }
      // The template itself may be gone (removed while nothing used it).
      if (opened) TRY(CollectLocked(layout, *opened));
      return Ok();
    }();
    if (!released && first) first = Err(std::move(released).error().Wrap("template " + t));
  }
  // A Nix template's generation was kept from Nix's collector meanwhile.
  Status unrooted = ReleaseNixRoot(layout, qube);
  if (!unrooted && first) first = std::move(unrooted);
  return first;
}

Result<Generation> CommitTemplateChanges(const Layout& layout, const std::string& t,
                                         const CommitOptions& options) {
  Opened o = TRY(OpenTemplate(layout, t));
  for (const Record& r : TRY(ReadRecords(layout, t))) {
    if (r.user.role == GenerationRole::kTemplateQube) {
      return Err(Error("template qube " + r.user.qube +
                           " is running: its changes become a new "
                           "generation of " +
                           t + " when it stops",
                       EBUSY));
    }
  }
  Generation g = TRY(CommitLocked(o, options));
  TRY(CollectLocked(layout, o));
  return g;
}

Result<Generation> PublishGeneration(const Layout& layout, const std::string& t,
                                     const GenerationBuilder& build, const CommitOptions& options) {
  Opened o = TRY(OpenTemplate(layout, t));
  TRY(CurrentLocked(o));  // migrates an old layout, and names a missing generation
  for (const Record& r : TRY(ReadRecords(layout, t))) {
    if (r.user.role == GenerationRole::kTemplateQube) {
      return Err(Error(
          "template " + t + ": its template qube " + r.user.qube + " is running; stop it first",
          EBUSY));
    }
  }
  if (TRY(ChangesPending(o))) {
    return Err(Error("template " + t +
                         ": its template qube's changes are not committed yet (start and stop "
                         "it, or discard them)",
                     EBUSY));
  }
  Generation made = TRY(PublishLocked(o, build, options));
  Log(LogLevel::kInfo, "template generation published",
      {{"template", t}, {"generation", std::to_string(made.number)}});
  TRY(CollectLocked(layout, o));
  return made;
}

Status CollectGenerations(const Layout& layout, const std::string& t) {
  Opened o = TRY(OpenTemplate(layout, t));
  return CollectLocked(layout, o);
}

Status CollectAllGenerations(const Layout& layout) {
  std::vector<TemplateInfo> templates = TRY(ListTemplates(layout));
  Status first = Ok();
  for (const TemplateInfo& info : templates) {
    Status collected = CollectGenerations(layout, info.name);
    if (!collected) {
      Log(LogLevel::kWarn, "template generations not collected",
          {{"template", info.name}, {"error", collected.error().ToString()}});
      if (first) first = std::move(collected);
    }
  }
  return first;
}

Result<GenerationStatus> GetGenerationStatus(const Layout& layout, const std::string& t) {
  Opened o = TRY(OpenTemplate(layout, t));
  GenerationStatus status;
  status.current = TRY(CurrentLocked(o)).number;
  status.generations = TRY(ListNumbers(o));
  for (Record& r : TRY(ReadRecords(layout, t))) status.users.push_back(std::move(r.user));
  status.changes_pending = TRY(ChangesPending(o));
  return status;
}

}  // namespace tessera::storage
