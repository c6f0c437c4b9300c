// Orphaned volumes: the storage of a qube removed from the description, kept
// in S/orphans/<id>/ until purged or adopted (volume_ops.h,
// docs/STORAGE.md "Orphans").
//
// Every change is one rename under the flock S/orphans/.lock, so a crash
// leaves each volume in exactly one place:
//   - orphaning a whole qube: orphan.json is written into S/qubes/<q>, then
//     S/qubes/<q> is renamed to S/orphans/<id>. A crash before the rename
//     leaves orphan.json in the qube directory, which FinishAdoption drops
//     (same id base: nothing to shift) and the daemon orphans again;
//   - orphaning only a private volume (a copy or adopt displacing it): a
//     complete S/orphans/<id>/ with orphan.json is made first (via a hidden
//     .new-XXXXXX), then private/ is renamed into it; a crash in between
//     leaves an empty orphan, never a hidden volume;
//   - adopting: S/orphans/<id> is renamed to S/qubes/<q> with its
//     orphan.json, which marks the id shift as pending until it is done;
//   - purging: S/orphans/<id> is renamed to .purge-<id>, then deleted.
// Hidden leftovers (.new-*, .purge-*) hold no volume and are removed by the
// next orphan operation.
//
// Id ranges: an orphan's files keep the ids of the qube's range, which stays
// recorded in S/idmap.json under the qube's name (as for any qube that was
// removed: nothing releases it). Re-adding the name gets the same range and
// a fresh, empty volume; the orphan's files are unreachable (S is 0700).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>

#include "common/fs.h"
#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/id_shift.h"
#include "storage/internal.h"
#include "storage/private_volume.h"
#include "storage/volume_ops.h"

namespace tessera::storage {
namespace {

using nlohmann::json;

constexpr int kOrphanFormat = 1;
constexpr const char* kOrphanFile = "orphan.json";
// What may be in a qube directory besides its volumes: its locks and hidden
// temporaries of an interrupted creation (never complete, so never data).
constexpr const char* kCreationLeftovers[] = {".private.tmp-", ".root.tmp-"};

std::string OrphansDir(const Layout& layout) { return layout.state_dir + "/orphans"; }

// "20261122T132528Z": sortable, and safe in a path component.
std::string CompactTime() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

json ToJson(const OrphanInfo& o) {
  return {{"format", kOrphanFormat}, {"qube", o.qube},       {"removed", o.removed},
          {"reason", o.reason},      {"id_base", o.id_base}, {"bytes", o.bytes}};
}

// orphan.json of the orphan `id` (or of a qube directory being adopted,
// id = ""), every field checked; errors name the file and field.
Result<OrphanInfo> ParseOrphan(const std::string& path, const std::string& id) {
  std::string text = TRY(ReadFile(path, 64 * 1024));
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Err(Error(path + ": not a JSON object", EINVAL));
  }
  auto field = [&](const char* name) -> Result<const json*> {
    auto it = doc.find(name);
    if (it == doc.end()) return Err(Error(path + ": missing field \"" + name + "\"", EINVAL));
    return &*it;
  };
  auto string_field = [&](const char* name) -> Result<std::string> {
    const json* v = TRY(field(name));
    if (!v->is_string()) {
      return Err(Error(path + ": field \"" + name + "\": expected a string", EINVAL));
    }
    return v->get<std::string>();
  };
  auto uint_field = [&](const char* name, uint64_t max) -> Result<uint64_t> {
    const json* v = TRY(field(name));
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      return Err(Error(
          path + ": field \"" + name + "\": expected an integer from 0 to " + std::to_string(max),
          EINVAL));
    }
    return v->get<uint64_t>();
  };
  if (TRY(uint_field("format", 1000)) != kOrphanFormat) {
    return Err(Error(
        path + ": field \"format\": unsupported (expected " + std::to_string(kOrphanFormat) + ")",
        EINVAL));
  }
  OrphanInfo o;
  o.id = id;
  o.qube = TRY(string_field("qube"));
  if (!IsValidName(o.qube)) return Err(Error(path + ": field \"qube\": not a qube name", EINVAL));
  if (!id.empty() && id.compare(0, o.qube.size() + 1, o.qube + "@") != 0) {
    return Err(
        Error(path + ": field \"qube\": \"" + o.qube + "\" does not match the directory", EINVAL));
  }
  o.removed = TRY(string_field("removed"));
  o.reason = TRY(string_field("reason"));
  o.id_base = static_cast<uid_t>(TRY(uint_field("id_base", UINT32_MAX - kIdsPerQube)));
  o.bytes = TRY(uint_field("bytes", UINT64_MAX));
  return o;
}

// S/orphans, made root 0700, and its lock taken; leftovers of interrupted
// operations removed under it.
struct LockedOrphans {
  UniqueFd dir;
  UniqueFd lock;
};
Result<LockedOrphans> LockOrphans(const Layout& layout) {
  std::string dir = OrphansDir(layout);
  LockedOrphans out;
  out.dir = TRY(internal::EnsurePrivateStateDir(dir));
  out.lock = TRY(internal::LockFileAt(out.dir.get(), ".lock", dir + "/.lock"));
  TRY(internal::RemoveLeftovers(dir, {".new-", ".purge-"}));
  return out;
}

// A fresh orphan id for `qube`: qube@time, with -2, -3, ... when taken.
Result<std::string> NewOrphanId(int orphans_fd, const std::string& qube) {
  std::string base = qube + "@" + CompactTime();
  for (int n = 1; n < 1000; ++n) {
    std::string id = n == 1 ? base : base + "-" + std::to_string(n);
    struct stat st {};
    if (::fstatat(orphans_fd, id.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return id;
      return Err(Error::FromErrno("stat orphan " + id));
    }
  }
  return Err(Error("too many orphans of qube " + qube + " made this second", EEXIST));
}

// The id base of the qube's files: its recorded range, else the owner of
// its private volume (a qube directory without a recorded range).
Result<uid_t> IdBaseOf(const Layout& layout, const std::string& qube, int qube_fd) {
  auto ids = LookupIdRange(layout, qube);
  if (ids) return ids->base;
  if (ids.error().errno_value() != ENOENT) return Err(std::move(ids).error());
  struct stat st {};
  if (::fstatat(qube_fd, "private", &st, AT_SYMLINK_NOFOLLOW) == 0) return st.st_uid;
  return uid_t{0};
}

// Orphans the whole directory S/qubes/<qube> (caller holds the orphan lock).
Result<std::optional<OrphanInfo>> OrphanQubeLocked(const Layout& layout, int orphans_fd,
                                                   const std::string& qube,
                                                   const std::string& reason) {
  std::string qubes = layout.state_dir + "/qubes";
  std::string dir = layout.QubeDir(qube);
  auto qubes_fd = internal::OpenDir(qubes, O_NOFOLLOW);
  if (!qubes_fd) {
    if (qubes_fd.error().errno_value() == ENOENT) return std::optional<OrphanInfo>();
    return Err(std::move(qubes_fd).error());
  }
  auto qube_fd = internal::OpenDirAt(qubes_fd->get(), qube, dir);
  if (!qube_fd) {
    if (qube_fd.error().errno_value() == ENOENT) return std::optional<OrphanInfo>();
    return Err(std::move(qube_fd).error());
  }
  TRY(internal::RemoveLeftovers(dir, {kCreationLeftovers[0], kCreationLeftovers[1]}));
  TRY(ClosePrivateVolume(layout, qube));  // the image moves along, unmounted
  OrphanInfo o;
  o.id = TRY(NewOrphanId(orphans_fd, qube));
  o.qube = qube;
  o.removed = internal::NowRfc3339();
  o.reason = reason;
  o.id_base = TRY(IdBaseOf(layout, qube, qube_fd->get()));
  o.bytes = TRY(DiskUsage(dir));
  TRY(WriteFileAtomic(dir + "/" + kOrphanFile, ToJson(o).dump(2) + "\n", 0600));
  std::string to = OrphansDir(layout) + "/" + o.id;
  TRY(Syscall("rename " + dir + " to " + to, [&] {
    return ::renameat2(qubes_fd->get(), qube.c_str(), orphans_fd, o.id.c_str(), RENAME_NOREPLACE);
  }));
  ::fsync(orphans_fd);
  ::fsync(qubes_fd->get());
  Log(LogLevel::kInfo, "volume orphaned",
      {{"qube", qube}, {"orphan", o.id}, {"bytes", std::to_string(o.bytes)}, {"reason", reason}});
  return std::optional<OrphanInfo>(std::move(o));
}

// Orphans only S/qubes/<qube>/private (caller holds the orphan lock): a
// complete orphan directory first, then the volume renamed into it.
Result<OrphanInfo> OrphanPrivateLocked(const Layout& layout, int orphans_fd, int qube_fd,
                                       const std::string& qube, uid_t id_base,
                                       const std::string& reason) {
  std::string orphans = OrphansDir(layout);
  OrphanInfo o;
  o.id = TRY(NewOrphanId(orphans_fd, qube));
  o.qube = qube;
  o.removed = internal::NowRfc3339();
  o.reason = reason;
  o.id_base = id_base;
  TRY(ClosePrivateVolume(layout, qube));
  std::string image = layout.QubeDir(qube) + "/private.img";
  bool has_image = HasPrivateImage(layout, qube);
  o.bytes = TRY(DiskUsage(has_image ? image : layout.PrivateVolume(qube)));
  std::string tmp = orphans + "/.new-XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + orphans));
  std::string tmp_name = tmp.substr(orphans.size() + 1);
  ScopeGuard cleanup([&] { (void)RemoveTree(tmp); });
  TRY(WriteFileAtomic(tmp + "/" + kOrphanFile, ToJson(o).dump(2) + "\n", 0600));
  TRY(Syscall("rename " + tmp + " to " + orphans + "/" + o.id, [&] {
    return ::renameat2(orphans_fd, tmp_name.c_str(), orphans_fd, o.id.c_str(), RENAME_NOREPLACE);
  }));
  cleanup.Dismiss();
  UniqueFd orphan_fd = TRY(internal::OpenDirAt(orphans_fd, o.id, orphans + "/" + o.id));
  // The image first: a crash after it leaves the qube an empty mount point,
  // which its next start fills with a fresh volume.
  if (has_image) {
    TRY(Syscall("rename " + image + " into orphan " + o.id, [&] {
      return ::renameat2(qube_fd, "private.img", orphan_fd.get(), "private.img", RENAME_NOREPLACE);
    }));
  }
  TRY(Syscall("rename " + layout.PrivateVolume(qube) + " into orphan " + o.id, [&] {
    return ::renameat2(qube_fd, "private", orphan_fd.get(), "private", RENAME_NOREPLACE);
  }));
  ::fsync(orphan_fd.get());
  ::fsync(qube_fd);
  Log(LogLevel::kInfo, "volume orphaned",
      {{"qube", qube}, {"orphan", o.id}, {"bytes", std::to_string(o.bytes)}, {"reason", reason}});
  return o;
}

Result<OrphanInfo> ReadOrphan(const Layout& layout, const std::string& id) {
  return ParseOrphan(OrphansDir(layout) + "/" + id + "/" + kOrphanFile, id);
}

// Shifts the tree `name` below qube_fd from `from` to ids.base unless its top
// (shifted last) shows it done; a top owned by host root is left to
// ShiftPrivateVolume (a volume of an older version).
Status ShiftPart(int qube_fd, const std::string& name, const std::string& path, uid_t from,
                 const IdRange& ids) {
  struct stat st {};
  if (::fstatat(qube_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    return Err(Error::FromErrno("stat " + path));
  }
  if (st.st_uid == ids.base || st.st_uid == 0) return Ok();
  UniqueFd fd = TRY(internal::OpenDirAt(qube_fd, name, path));
  return ShiftTreeOwnership(fd.get(), path, IdShift{.from_base = from, .to_base = ids.base});
}

}  // namespace

bool IsOrphanId(const std::string& id) {
  size_t at = id.find('@');
  if (at == std::string::npos || !IsValidName(id.substr(0, at))) return false;
  std::string stamp = id.substr(at + 1);
  // YYYYMMDDTHHMMSSZ, then optionally -N.
  if (stamp.size() < 16) return false;
  for (size_t i = 0; i < 16; ++i) {
    char c = stamp[i];
    bool ok = i == 8 ? c == 'T' : i == 15 ? c == 'Z' : (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  std::string rest = stamp.substr(16);
  if (rest.empty()) return true;
  if (rest.size() < 2 || rest.size() > 4 || rest[0] != '-') return false;
  return std::all_of(rest.begin() + 1, rest.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Result<std::optional<OrphanInfo>> OrphanQubeStorage(const Layout& layout, const std::string& qube,
                                                    const std::string& reason) {
  TRY(ValidateName(qube));
  LockedOrphans orphans = TRY(LockOrphans(layout));
  return TRY_CTX(OrphanQubeLocked(layout, orphans.dir.get(), qube, reason),
                 "keep the volume of qube " + qube + " as an orphan");
}

Result<std::vector<OrphanInfo>> ListOrphans(const Layout& layout) {
  std::string dir = OrphansDir(layout);
  auto dir_fd = internal::OpenDir(dir, O_NOFOLLOW);
  if (!dir_fd) {
    if (dir_fd.error().errno_value() == ENOENT) return std::vector<OrphanInfo>{};
    return Err(std::move(dir_fd).error());
  }
  std::vector<OrphanInfo> out;
  TRY(internal::ForEachEntry(dir_fd->get(), dir, [&](const std::string& name) -> Status {
    if (!IsOrphanId(name)) return Ok();  // the lock, hidden leftovers
    auto o = ReadOrphan(layout, name);
    if (!o) {
      if (o.error().errno_value() == ENOENT) return Ok();  // purged meanwhile
      return Err(std::move(o).error());
    }
    out.push_back(std::move(*o));
    return Ok();
  }));
  std::sort(out.begin(), out.end(), [](const OrphanInfo& a, const OrphanInfo& b) {
    return std::tie(a.removed, a.id) < std::tie(b.removed, b.id);
  });
  return out;
}

Result<OrphanInfo> FindOrphan(const Layout& layout, const std::string& name) {
  if (IsOrphanId(name)) {
    auto o = ReadOrphan(layout, name);
    if (!o && o.error().errno_value() == ENOENT) {
      return Err(Error("no orphaned volume " + name + " (`tessera volume ls` lists them)", ENOENT));
    }
    return o;
  }
  if (!IsValidName(name)) {
    TRY(ValidateName(name, "orphan (an orphan id or a qube name)"));
  }
  std::vector<OrphanInfo> matches;
  for (OrphanInfo& o : TRY(ListOrphans(layout))) {
    if (o.qube == name) matches.push_back(std::move(o));
  }
  if (matches.empty()) {
    return Err(
        Error("no orphaned volume of qube " + name + " (`tessera volume ls` lists them)", ENOENT));
  }
  if (matches.size() > 1) {
    std::string ids;
    for (const auto& o : matches) ids += (ids.empty() ? "" : ", ") + o.id;
    return Err(Error("qube " + name + " has " + std::to_string(matches.size()) +
                         " orphaned volumes (" + ids + "); name one",
                     EEXIST));
  }
  return std::move(matches.front());
}

Result<OrphanInfo> PurgeOrphan(const Layout& layout, const std::string& name) {
  LockedOrphans orphans = TRY(LockOrphans(layout));
  OrphanInfo o = TRY(FindOrphan(layout, name));
  std::string dir = OrphansDir(layout);
  std::string aside = ".purge-" + o.id;
  TRY(Syscall("rename " + dir + "/" + o.id + " to " + aside, [&] {
    return ::renameat2(orphans.dir.get(), o.id.c_str(), orphans.dir.get(), aside.c_str(),
                       RENAME_NOREPLACE);
  }));
  ::fsync(orphans.dir.get());
  TRY_CTX(RemoveTree(dir + "/" + aside), "purge orphaned volume " + o.id);
  Log(LogLevel::kInfo, "orphaned volume purged", {{"orphan", o.id}, {"qube", o.qube}});
  return o;
}

Status FinishAdoption(const Layout& layout, const std::string& qube, const IdRange& ids) {
  TRY(ValidateName(qube));
  std::string dir = layout.QubeDir(qube);
  auto qube_fd = internal::OpenDir(dir, O_NOFOLLOW);
  if (!qube_fd) {
    if (qube_fd.error().errno_value() == ENOENT) return Ok();
    return Err(std::move(qube_fd).error());
  }
  std::string marker = dir + "/" + kOrphanFile;
  struct stat st {};
  if (::fstatat(qube_fd->get(), kOrphanFile, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();  // the usual case
    return Err(Error::FromErrno("stat " + marker));
  }
  OrphanInfo o = TRY(ParseOrphan(marker, ""));
  if (o.id_base != ids.base) {
    TRY_CTX(
        WithPrivateVolume(
            layout, qube,
            [&] { return ShiftPart(qube_fd->get(), "private", dir + "/private", o.id_base, ids); }),
        "move the adopted volume of " + qube + " into its id range");
    TRY_CTX(ShiftPart(qube_fd->get(), "root", dir + "/root", o.id_base, ids),
            "move the adopted root of " + qube + " into its id range");
  }
  TRY(Syscall("unlink " + marker, [&] { return ::unlinkat(qube_fd->get(), kOrphanFile, 0); }));
  ::fsync(qube_fd->get());
  return Ok();
}

Result<AdoptOutcome> AdoptOrphan(const Layout& layout, const std::string& name,
                                 const std::string& qube, const IdRange& ids, Displace displace) {
  TRY(ValidateName(qube));
  if (ids.base < kFirstHostId || ids.count < kIdsPerQube) {
    return Err(Error("qube " + qube + ": a volume needs a full id range at or above " +
                         std::to_string(kFirstHostId),
                     EINVAL));
  }
  LockedOrphans orphans = TRY(LockOrphans(layout));
  AdoptOutcome out;
  out.adopted = TRY(FindOrphan(layout, name));
  std::string what = "adopt orphaned volume " + out.adopted.id + " as qube " + qube + "'s";
  // A pending adoption into this qube is finished first, so the check below
  // sees the files as they are.
  TRY_CTX(FinishAdoption(layout, qube, ids), what);
  if (TRY_CTX(HasData(layout, qube), what)) {
    if (displace == Displace::kRefuse) {
      uint64_t bytes = DiskUsage(layout.QubeDir(qube)).value_or(0);
      return Err(Error(what + ": qube " + qube + " already has a volume with data (" +
                           layout.QubeDir(qube) + ", " + std::to_string(bytes / 1024) +
                           " KiB); --force keeps it as an orphan first",
                       EEXIST));
    }
    out.displaced = TRY_CTX(
        OrphanQubeLocked(layout, orphans.dir.get(), qube, "replaced by adopting " + out.adopted.id),
        what);
  } else {
    // A fresh skeleton (or nothing): no data to keep.
    TRY_CTX(ClosePrivateVolume(layout, qube), what);
    TRY_CTX(RemoveTree(layout.QubeDir(qube)), what);
  }
  UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
  TRY_CTX(Syscall("rename",
                  [&] {
                    return ::renameat2(orphans.dir.get(), out.adopted.id.c_str(), qubes_fd.get(),
                                       qube.c_str(), RENAME_NOREPLACE);
                  }),
          what);
  ::fsync(qubes_fd.get());
  ::fsync(orphans.dir.get());
  TRY_CTX(FinishAdoption(layout, qube, ids), what);
  Log(LogLevel::kInfo, "orphaned volume adopted", {{"orphan", out.adopted.id}, {"qube", qube}});
  return out;
}

Result<CopyOutcome> CopyPrivateVolume(const Layout& layout, const std::string& source,
                                      const std::string& dest, Displace displace) {
  TRY(ValidateName(source));
  TRY(ValidateName(dest));
  std::string what = "copy the private volume of " + source + " to " + dest;
  if (source == dest) return Err(Error(what + ": source and destination are the same", EINVAL));
  std::string from = layout.PrivateVolume(source);
  struct stat st {};
  if (::lstat(from.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Err(
          Error(what + ": " + source + " has no private volume yet (no " + from + ")", ENOENT));
    }
    return Err(Error::FromErrno("stat " + from));
  }
  IdRange source_ids = TRY_CTX(AllocateIdRange(layout, source), what);
  IdRange dest_ids = TRY_CTX(AllocateIdRange(layout, dest), what);
  LockedOrphans orphans = TRY(LockOrphans(layout));
  TRY_CTX(FinishAdoption(layout, source, source_ids), what);
  TRY_CTX(FinishAdoption(layout, dest, dest_ids), what);
  // The source's volume of an older version (host-root owned) is shifted
  // first, so every id of the copy comes from the source's range.
  TRY_CTX(WithPrivateVolume(layout, source,
                            [&] { return ShiftPrivateVolume(layout, source, source_ids); }),
          what);

  UniqueFd qubes_fd = TRY(internal::EnsurePrivateStateDir(layout.state_dir + "/qubes"));
  std::string dest_dir = layout.QubeDir(dest);
  TRY(internal::EnsureDirAt(qubes_fd.get(), dest, 0700, 0, 0, dest_dir));
  UniqueFd dest_fd = TRY(internal::OpenDirAt(qubes_fd.get(), dest, dest_dir));
  bool dest_exists = ::fstatat(dest_fd.get(), "private", &st, AT_SYMLINK_NOFOLLOW) == 0;
  bool dest_image = HasPrivateImage(layout, dest);
  bool dest_data = false;
  if (dest_exists) {
    Status checked = WithPrivateVolume(layout, dest, [&]() -> Status {
      dest_data = TRY(internal::PrivateVolumeHasData(dest_fd.get(), layout.PrivateVolume(dest)));
      return Ok();
    });
    TRY_CTX(std::move(checked), what);
  }
  if (dest_data && displace == Displace::kRefuse) {
    uint64_t bytes = DiskUsage(layout.PrivateVolume(dest)).value_or(0);
    return Err(Error(what + ": " + dest + " already has a private volume with data (" +
                         layout.PrivateVolume(dest) + ", " + std::to_string(bytes / 1024) +
                         " KiB); --force keeps it as an orphan first",
                     EEXIST));
  }

  // The copy, complete and synced in a hidden temporary beside the volume.
  UniqueFd lock =
      TRY(internal::LockFileAt(dest_fd.get(), ".private.lock", dest_dir + "/.private.lock"));
  TRY(internal::RemoveLeftovers(dest_dir, {".private.tmp-"}));
  std::string tmp = dest_dir + "/.private.tmp-XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + dest_dir));
  std::string tmp_name = tmp.substr(dest_dir.size() + 1);
  ScopeGuard cleanup([&] {
    if (auto removed = RemoveTree(tmp); !removed) {
      Log(LogLevel::kWarn, "could not remove a failed copy",
          {{"path", tmp}, {"error", removed.error().ToString()}});
    }
  });
  UniqueFd tmp_fd = TRY(internal::OpenDir(tmp, O_NOFOLLOW));
  // An image source is mounted for the copy. The copy is a directory
  // volume: the destination's next start moves it into an image of its own
  // private_size.
  TRY_CTX(WithPrivateVolume(layout, source,
                            [&]() -> Status {
                              return internal::CopyTreeShifted(
                                  from, tmp_fd.get(), tmp,
                                  IdShift{.from_base = source_ids.base, .to_base = dest_ids.base});
                            }),
          what);
  ::syncfs(tmp_fd.get());

  CopyOutcome out;
  if (dest_image && !dest_data) {
    // An empty image goes before the copy takes its place (a crash in
    // between leaves an empty volume, as before the copy).
    TRY_CTX(ClosePrivateVolume(layout, dest), what);
    TRY(Syscall("unlink " + dest_dir + "/private.img",
                [&] { return ::unlinkat(dest_fd.get(), "private.img", 0); }));
  }
  if (dest_data) {
    out.displaced = TRY_CTX(OrphanPrivateLocked(layout, orphans.dir.get(), dest_fd.get(), dest,
                                                dest_ids.base, "replaced by a copy of " + source),
                            what);
  } else if (dest_exists) {
    // An empty skeleton: swapped out atomically, then removed with the temporary.
    TRY_CTX(Syscall("exchange",
                    [&] {
                      return ::renameat2(dest_fd.get(), tmp_name.c_str(), dest_fd.get(), "private",
                                         RENAME_EXCHANGE);
                    }),
            what);
    ::fsync(dest_fd.get());
    out.bytes = TRY(DiskUsage(layout.PrivateVolume(dest)));
    return out;  // the guard removes the old skeleton, now at tmp
  }
  TRY_CTX(Syscall("rename",
                  [&] {
                    return ::renameat2(dest_fd.get(), tmp_name.c_str(), dest_fd.get(), "private",
                                       RENAME_NOREPLACE);
                  }),
          what);
  cleanup.Dismiss();
  ::fsync(dest_fd.get());
  out.bytes = TRY(DiskUsage(layout.PrivateVolume(dest)));
  Log(LogLevel::kInfo, "private volume copied", {{"from", source}, {"to", dest}});
  return out;
}

}  // namespace tessera::storage
