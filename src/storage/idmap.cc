// Id ranges: each qube's root maps to its own 65,536 host ids, recorded in
// S/idmap.json so the mapping (and therefore the ownership of its private
// volume) is stable across restarts.
//
//   {"format": 1, "next_base": 268632064, "qubes": {"work": 268435456, ...},
//    "free": [268566528], "retired": []}
//
// Every read-modify-write holds an exclusive flock on S/idmap.lock and writes
// with WriteFileAtomic, so concurrent allocators (daemon, `tessera cell run`,
// tests) never hand out the same range and a crash leaves the old or new file.
// Recycling: a released range goes to "free" only if the qube's storage
// (S/qubes/<name>, R/cells/<name>) is verified gone, so no file of the old
// owner can surface in the new one; otherwise it is "retired" (never handed
// out again while this state directory exists). Allocation takes "free"
// (oldest first) before growing `next_base`. Without recycling, disposables
// would exhaust the ~61,000 ranges. "free" and "retired" are fields older
// readers ignore (they read the file fine, and merely drop the lists when they
// rewrite it; a file without "retired" has its retired ranges inferred: every
// boundary below next_base that is neither a qube's nor free).
//
// Host-wide uniqueness: ranges are host ids, so two state directories (two
// daemons, test runs) must never hand out the same one, or a qube of one
// could signal or ptrace a qube of the other. The host registry
// kHostIdRegistryDir/ranges.json records base -> {state_dir, qube} for every
// range in use or retired on the host:
//
//   {"format": 1, "ranges": [{"base": 268435456, "state_dir": "/var/lib/tessera",
//                             "qube": "work"}, {..., "retired": true}]}
//
// Lock order: the registry's flock (ranges.lock) first, then the state dir's
// idmap.lock. A range is registered before idmap.json records it (a crash in
// between leaves a registry entry that is stale, not a range that is
// unregistered). An entry is stale, and reclaimed by the next allocation, when
// its state directory no longer exists or its idmap.json no longer lists that
// (qube, base) (or that retired base). Ranges of an idmap.json written before
// the registry existed are registered on first use; one that collides with
// another state directory's registered range is refused, naming both.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/idmap_internal.h"
#include "storage/internal.h"
#include "storage/storage.h"

namespace tessera::storage {
namespace {

using json = nlohmann::json;

constexpr uint64_t kLastUsableId = 0xFFFFFFFEull;  // (uid_t)-1 means "no id"

struct IdMap {
  uint64_t next_base = kFirstHostId;
  std::vector<std::pair<std::string, uint64_t>> qubes;  // sorted by insertion/JSON order
  std::vector<uint64_t> free;     // released ranges, oldest first
  std::vector<uint64_t> retired;  // released while storage remained: never reused

  const uint64_t* BaseOf(const std::string& qube) const {
    for (const auto& [name, base] : qubes) {
      if (name == qube) return &base;
    }
    return nullptr;
  }
  bool Lists(const std::string& qube, uint64_t base) const {
    const uint64_t* found = BaseOf(qube);
    return found != nullptr && *found == base;
  }
  bool Retired(uint64_t base) const {
    return std::find(retired.begin(), retired.end(), base) != retired.end();
  }
};

std::string MapPath(const std::string& state_dir) { return state_dir + "/idmap.json"; }
std::string MapPath(const Layout& layout) { return MapPath(layout.state_dir); }


// One range base of idmap.json (`where` names the file and field): an
// allocated boundary below next_base, not already in `seen` (added to it).
Result<uint64_t> CheckRangeBase(const json& value, uint64_t next_base, std::vector<uint64_t>& seen,
                                const std::string& where, const char* duplicate_message) {
  if (!value.is_number_unsigned()) {
    return Err(Error(where + ": expected an unsigned integer", EINVAL));
  }
  uint64_t base = value.get<uint64_t>();
  if (base < kFirstHostId || (base - kFirstHostId) % kIdsPerQube != 0 || base >= next_base) {
    return Err(Error(where + ": " + std::to_string(base) + " is not an allocated range boundary",
                     EINVAL));
  }
  if (std::find(seen.begin(), seen.end(), base) != seen.end()) {
    return Err(Error(where + ": range " + std::to_string(base) + " " + duplicate_message, EINVAL));
  }
  seen.push_back(base);
  return base;
}

// A JSON object with "format": 1 (idmap.json, ranges.json).
Result<json> ParseFormat1(const std::string& path, const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Err(Error(path + ": not a JSON object (refusing to guess id ranges)", EINVAL));
  }
  auto format = doc.find("format");
  if (format == doc.end() || !format->is_number_unsigned() || format->get<uint64_t>() != 1) {
    return Err(Error(path + ": field \"format\": expected 1", EINVAL));
  }
  return doc;
}

Result<IdMap> ParseIdMap(const std::string& path, const std::string& text) {
  json doc = TRY(ParseFormat1(path, text));
  IdMap map;
  auto next = doc.find("next_base");
  if (next == doc.end() || !next->is_number_unsigned()) {
    return Err(Error(path + ": field \"next_base\": expected an unsigned integer", EINVAL));
  }
  map.next_base = next->get<uint64_t>();
  if (map.next_base < kFirstHostId || (map.next_base - kFirstHostId) % kIdsPerQube != 0) {
    return Err(Error(path + ": field \"next_base\": " + std::to_string(map.next_base) +
                         " is not a range boundary at or above " + std::to_string(kFirstHostId),
                     EINVAL));
  }
  auto qubes = doc.find("qubes");
  if (qubes == doc.end() || !qubes->is_object()) {
    return Err(Error(path + ": field \"qubes\": expected an object", EINVAL));
  }
  std::vector<uint64_t> seen;
  for (auto it = qubes->begin(); it != qubes->end(); ++it) {
    std::string field = "field \"qubes." + it.key() + "\"";
    auto name_ok = ValidateName(it.key());
    if (!name_ok) return Err(std::move(name_ok).error().Wrap(path + ": " + field));
    uint64_t base = TRY(CheckRangeBase(*it, map.next_base, seen, path + ": " + field,
                                       "is given to two qubes"));
    map.qubes.emplace_back(it.key(), base);
  }
  auto read_list = [&](const char* key, std::vector<uint64_t>& out) -> Status {
    auto list = doc.find(key);
    if (list == doc.end()) return Ok();
    if (!list->is_array()) {
      return Err(Error(path + ": field \"" + key + "\": expected an array", EINVAL));
    }
    for (size_t i = 0; i < list->size(); ++i) {
      std::string field = "field \"" + std::string(key) + "[" + std::to_string(i) + "]\"";
      uint64_t base = TRY(CheckRangeBase((*list)[i], map.next_base, seen, path + ": " + field,
                                         "is listed twice (free, retired or in use)"));
      out.push_back(base);
    }
    return Ok();
  };
  TRY(read_list("free", map.free));
  if (doc.contains("retired")) {
    TRY(read_list("retired", map.retired));
  } else {
    // Written before "retired" existed: every boundary below next_base that
    // is neither a qube's nor free was released while files of it remained.
    for (uint64_t base = kFirstHostId; base < map.next_base; base += kIdsPerQube) {
      if (std::find(seen.begin(), seen.end(), base) == seen.end()) map.retired.push_back(base);
    }
  }
  return map;
}

std::string SerializeIdMap(const IdMap& map) {
  json qubes = json::object();
  for (const auto& [name, base] : map.qubes) qubes[name] = base;
  json doc = {{"format", 1},        {"next_base", map.next_base}, {"qubes", qubes},
              {"free", map.free},    {"retired", map.retired}};
  return doc.dump(2) + "\n";
}

// Holds an exclusive flock on `dir`/`name` (created, with `dir` and `dir_mode`)
// for as long as it lives: S/idmap.lock, or the registry's ranges.lock.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& dir, const char* name, mode_t dir_mode) {
    TRY(MakeDirs(dir, dir_mode));
    std::string path = dir + "/" + name;
    UniqueFd fd(TRY(Syscall("open " + path, [&] {
      return ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    })));
    TRY(Syscall("flock " + path, [&] { return ::flock(fd.get(), LOCK_EX); }));
    return FileLock(std::move(fd));
  }

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

Result<FileLock> LockIdMap(const Layout& layout) {
  return FileLock::Acquire(layout.state_dir, "idmap.lock", 0755);
}

// A missing file is an empty map.
Result<IdMap> LoadIdMap(const std::string& state_dir) {
  std::string path = MapPath(state_dir);
  auto text = ReadFile(path, 16u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return IdMap{};
    return Err(std::move(text).error());
  }
  return ParseIdMap(path, *text);
}
Result<IdMap> LoadIdMap(const Layout& layout) { return LoadIdMap(layout.state_dir); }

Status StoreIdMap(const Layout& layout, const IdMap& map) {
  return WriteFileAtomic(MapPath(layout), SerializeIdMap(map), 0644);
}

// ---- the host registry -------------------------------------------------------

struct RegistryEntry {
  uint64_t base = 0;
  std::string state_dir;  // absolute, canonical
  std::string qube;
  bool retired = false;
  bool operator==(const RegistryEntry&) const = default;
};

struct Registry {
  std::string dir;
  std::vector<RegistryEntry> entries;

  std::string Path() const { return dir + "/ranges.json"; }
  RegistryEntry* Find(uint64_t base) {
    for (RegistryEntry& e : entries) {
      if (e.base == base) return &e;
    }
    return nullptr;
  }
  void Erase(uint64_t base) {
    std::erase_if(entries, [&](const RegistryEntry& e) { return e.base == base; });
  }
};

Result<FileLock> LockRegistry(const std::string& dir) {
  auto lock = FileLock::Acquire(dir, "ranges.lock", 0700);
  if (!lock) return Err(std::move(lock).error().Wrap("host id registry " + dir));
  return lock;
}

Result<Registry> ParseRegistry(const std::string& path, const std::string& text, Registry reg) {
  json doc = TRY(ParseFormat1(path, text));
  auto ranges = doc.find("ranges");
  if (ranges == doc.end() || !ranges->is_array()) {
    return Err(Error(path + ": field \"ranges\": expected an array", EINVAL));
  }
  for (size_t i = 0; i < ranges->size(); ++i) {
    const json& r = (*ranges)[i];
    std::string where = path + ": field \"ranges[" + std::to_string(i) + "]\"";
    if (!r.is_object() || !r.contains("base") || !r["base"].is_number_unsigned() ||
        !r.contains("state_dir") || !r["state_dir"].is_string() || !r.contains("qube") ||
        !r["qube"].is_string() || (r.contains("retired") && !r["retired"].is_boolean())) {
      return Err(Error(where + ": expected {\"base\", \"state_dir\", \"qube\"[, \"retired\"]}",
                       EINVAL));
    }
    RegistryEntry e{r["base"].get<uint64_t>(), r["state_dir"].get<std::string>(),
                    r["qube"].get<std::string>(), r.value("retired", false)};
    if (e.base < kFirstHostId || (e.base - kFirstHostId) % kIdsPerQube != 0 ||
        e.base + kIdsPerQube - 1 > 0xFFFFFFFEull) {
      return Err(Error(where + ": " + std::to_string(e.base) + " is not a range boundary", EINVAL));
    }
    if (e.state_dir.empty() || e.state_dir[0] != '/') {
      return Err(Error(where + ": state_dir must be an absolute path", EINVAL));
    }
    if (reg.Find(e.base) != nullptr) {
      return Err(Error(where + ": range " + std::to_string(e.base) + " is listed twice", EINVAL));
    }
    reg.entries.push_back(std::move(e));
  }
  return reg;
}

Result<Registry> LoadRegistry(const std::string& dir) {
  Registry reg;
  reg.dir = dir;
  auto text = ReadFile(reg.Path(), 64u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return reg;
    return Err(std::move(text).error());
  }
  return ParseRegistry(reg.Path(), *text, std::move(reg));
}

Status StoreRegistry(const Registry& reg) {
  json ranges = json::array();
  for (const RegistryEntry& e : reg.entries) {
    json r = {{"base", e.base}, {"state_dir", e.state_dir}, {"qube", e.qube}};
    if (e.retired) r["retired"] = true;
    ranges.push_back(std::move(r));
  }
  json doc = {{"format", 1}, {"ranges", std::move(ranges)}};
  return WriteFileAtomic(reg.Path(), doc.dump(2) + "\n", 0600);
}

// Whether `e` still describes a range its state directory holds. `own_dir`
// and `own` are the caller's state directory and its map (read under its
// lock); other directories' idmap.json are read as they are (written by
// rename; an allocator there waits for the registry lock we hold).
bool EntryIsLive(const RegistryEntry& e, const std::string& own_dir, const IdMap& own) {
  const IdMap* map = &own;
  IdMap other;
  if (e.state_dir != own_dir) {
    struct stat st {};
    if (::lstat(e.state_dir.c_str(), &st) != 0 && errno == ENOENT) return false;
    auto loaded = LoadIdMap(e.state_dir);
    if (!loaded) {
      // Unreadable or corrupt: keep the range rather than risk handing it out twice.
      Log(LogLevel::kWarn, "cannot read the id map of a registered range; keeping it",
          {{"state_dir", e.state_dir}, {"error", loaded.error().ToString()}});
      return true;
    }
    other = std::move(*loaded);
    map = &other;
  }
  // A range released while its storage remained stays registered as retired.
  return map->Lists(e.qube, e.base) || map->Retired(e.base);
}

// Drops stale entries; true if any went.
bool PruneRegistry(Registry& reg, const std::string& own_dir, const IdMap& own) {
  size_t before = reg.entries.size();
  std::erase_if(reg.entries, [&](const RegistryEntry& e) { return !EntryIsLive(e, own_dir, own); });
  return reg.entries.size() != before;
}

Error Collision(const std::string& state_dir, const std::string& qube, uint64_t base,
                const RegistryEntry& holder, const std::string& registry_path) {
  return Error("id range " + std::to_string(base) + " of qube " + qube + " (" +
                   MapPath(state_dir) + ") is also " +
                   (holder.retired ? "retired by qube " : "used by qube ") + holder.qube +
                   " of state directory " + holder.state_dir + " (" + registry_path +
                   "); refusing a range two qubes would share",
               EEXIST);
}

// Registers every range of `map` (qubes and retired) not registered yet.
// Those held by another state directory are left out (and logged): using
// them fails with a collision error naming both.
bool RegisterAll(Registry& reg, const std::string& state_dir, const IdMap& map) {
  bool changed = false;
  auto add = [&](const std::string& qube, uint64_t base, bool retired) {
    RegistryEntry want{base, state_dir, qube, retired};
    RegistryEntry* e = reg.Find(base);
    if (e == nullptr) {
      reg.entries.push_back(std::move(want));
      changed = true;
    } else if (e->state_dir == state_dir) {
      if (e->retired != retired || (!retired && e->qube != qube)) {
        *e = std::move(want);
        changed = true;
      }
    } else {
      Log(LogLevel::kWarn, "id range of this state directory is registered to another one",
          {{"qube", qube}, {"base", std::to_string(base)}, {"holder", e->state_dir}});
    }
  };
  for (const auto& [name, base] : map.qubes) add(name, base, false);
  for (uint64_t base : map.retired) add("", base, true);
  return changed;
}

IdRange ToRange(uint64_t base) { return IdRange{static_cast<uid_t>(base), kIdsPerQube}; }

// /etc/subuid and /etc/subgid ranges ("name:start:count"); unparsable lines are
// ignored (they reserve nothing we could read).
void ReadSubIdFile(const std::string& path, std::vector<internal::ReservedRange>& out) {
  auto text = ReadFile(path, 4u << 20);
  if (!text) return;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    char* end = nullptr;
    std::string start_s = line.substr(a + 1, b - a - 1);
    std::string count_s = line.substr(b + 1);
    uint64_t start = std::strtoull(start_s.c_str(), &end, 10);
    if (start_s.empty() || *end != '\0') continue;
    uint64_t count = std::strtoull(count_s.c_str(), &end, 10);
    if (count_s.empty() || *end != '\0' || count == 0) continue;
    out.push_back({start, count});
  }
}

}  // namespace

namespace internal {

Result<uint64_t> NextFreeBase(uint64_t candidate, const std::vector<ReservedRange>& reserved) {
  for (;;) {
    if (candidate + kIdsPerQube - 1 > kLastUsableId) {
      return Err(Error("no free host id range left above " + std::to_string(kFirstHostId), ENOSPC));
    }
    bool moved = false;
    for (const auto& r : reserved) {
      uint64_t r_end = r.start + r.count;  // exclusive
      if (r.start < candidate + kIdsPerQube && candidate < r_end) {
        // Jump to the first range boundary at or after the reserved range's end.
        uint64_t offset = r_end - kFirstHostId;
        candidate = kFirstHostId + (offset + kIdsPerQube - 1) / kIdsPerQube * kIdsPerQube;
        moved = true;
      }
    }
    if (!moved) return candidate;
  }
}

std::vector<ReservedRange> HostSubIdRanges() {
  std::vector<ReservedRange> out;
  ReadSubIdFile("/etc/subuid", out);
  ReadSubIdFile("/etc/subgid", out);
  return out;
}

}  // namespace internal

namespace internal {

Result<IdRange> AllocateIdRangeIn(const Layout& layout, const std::string& qube,
                                  const std::string& registry_dir) {
  TRY(ValidateName(qube));
  TRY(MakeDirs(layout.state_dir, 0755));
  std::string state_dir = TRY(RealPath(layout.state_dir));
  // Lock order: registry, then the state directory's map.
  FileLock registry_lock = TRY(LockRegistry(registry_dir));
  FileLock map_lock = TRY(LockIdMap(layout));
  IdMap map = TRY(LoadIdMap(layout));
  Registry reg = TRY(LoadRegistry(registry_dir));

  if (const uint64_t* recorded = map.BaseOf(qube)) {
    uint64_t base = *recorded;
    RegistryEntry* holder = reg.Find(base);
    if (holder != nullptr && holder->state_dir == state_dir && holder->qube == qube &&
        !holder->retired) {
      return ToRange(base);  // the usual case: every start of a known qube
    }
    // Recorded before the registry existed (or its entry went stale): register it.
    bool changed = PruneRegistry(reg, state_dir, map);
    holder = reg.Find(base);
    if (holder != nullptr && holder->state_dir != state_dir) {
      return Err(Collision(state_dir, qube, base, *holder, reg.Path()));
    }
    changed = RegisterAll(reg, state_dir, map) || changed;
    if (changed) TRY_CTX(StoreRegistry(reg), "register id range of qube " + qube);
    return ToRange(base);
  }

  PruneRegistry(reg, state_dir, map);
  RegisterAll(reg, state_dir, map);
  std::vector<internal::ReservedRange> reserved = internal::HostSubIdRanges();
  std::vector<internal::ReservedRange> taken = reserved;  // + every registered range
  for (const RegistryEntry& e : reg.entries) taken.push_back({e.base, kIdsPerQube});
  std::optional<uint64_t> chosen;
  // A released range first (oldest first), unless the host's subuid/subgid
  // files have since claimed it (it then stays listed) or another state
  // directory has taken it meanwhile (it is dropped: it is not ours now).
  for (auto it = map.free.begin(); it != map.free.end() && !chosen;) {
    RegistryEntry* holder = reg.Find(*it);
    if (holder != nullptr && holder->state_dir != state_dir) {
      it = map.free.erase(it);
      continue;
    }
    auto usable = internal::NextFreeBase(*it, reserved);
    if (usable && *usable == *it && holder == nullptr) {
      chosen = *it;
      map.free.erase(it);
      break;
    }
    ++it;
  }
  if (!chosen) chosen = TRY(internal::NextFreeBase(map.next_base, taken));
  uint64_t base = *chosen;
  map.qubes.emplace_back(qube, base);
  map.next_base = std::max(map.next_base, base + kIdsPerQube);
  reg.Erase(base);
  reg.entries.push_back(RegistryEntry{base, state_dir, qube, false});
  // Registry first: a crash before the map is written leaves a stale entry
  // (reclaimed), never a recorded range the registry does not know.
  TRY_CTX(StoreRegistry(reg), "register id range of qube " + qube);
  TRY_CTX(StoreIdMap(layout, map), "record id range of qube " + qube);
  return ToRange(base);
}

Status ReleaseIdRangeIn(const Layout& layout, const std::string& qube,
                        const std::string& registry_dir) {
  TRY(ValidateName(qube));
  auto resolved = RealPath(layout.state_dir);
  if (!resolved) {
    if (resolved.error().errno_value() == ENOENT) return Ok();  // nothing was ever recorded
    return Err(std::move(resolved).error());
  }
  std::string state_dir = std::move(*resolved);
  FileLock registry_lock = TRY(LockRegistry(registry_dir));
  FileLock map_lock = TRY(LockIdMap(layout));
  IdMap map = TRY(LoadIdMap(layout));
  Registry reg = TRY(LoadRegistry(registry_dir));
  auto it = std::find_if(map.qubes.begin(), map.qubes.end(),
                         [&](const auto& entry) { return entry.first == qube; });
  if (it == map.qubes.end()) return Ok();  // nothing recorded: already released
  uint64_t base = it->second;
  map.qubes.erase(it);
  bool gone = true;
  for (const std::string& path : {layout.QubeDir(qube), layout.ScratchDir(qube)}) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 || errno != ENOENT) gone = false;
  }
  RegistryEntry* entry = reg.Find(base);
  bool ours = entry != nullptr && entry->state_dir == state_dir;
  if (gone) {
    map.free.push_back(base);
    if (ours) reg.Erase(base);
  } else {
    // Files of this range may survive: forget the name, never reuse the ids
    // (nor let another state directory take them).
    Log(LogLevel::kWarn, "id range released while the qube's storage remains; not recycling it",
        {{"qube", qube}, {"base", std::to_string(base)}});
    map.retired.push_back(base);
    if (ours) {
      entry->retired = true;
    } else if (entry == nullptr) {
      reg.entries.push_back(RegistryEntry{base, state_dir, qube, true});
    }
  }
  // The map first: a crash before the registry is written leaves an entry
  // that the map no longer lists (stale, reclaimed) or lists as retired.
  TRY(StoreIdMap(layout, map));
  return StoreRegistry(reg);
}

Status PruneIdRegistry(const std::string& registry_dir) {
  struct stat st {};
  if (::lstat((registry_dir + "/ranges.json").c_str(), &st) != 0 && errno == ENOENT) return Ok();
  FileLock registry_lock = TRY(LockRegistry(registry_dir));
  Registry reg = TRY(LoadRegistry(registry_dir));
  if (!PruneRegistry(reg, "", IdMap{})) return Ok();
  return StoreRegistry(reg);
}

}  // namespace internal

Result<IdRange> AllocateIdRange(const Layout& layout, const std::string& qube) {
  return internal::AllocateIdRangeIn(layout, qube, std::string(kHostIdRegistryDir));
}

Status ReleaseIdRange(const Layout& layout, const std::string& qube) {
  return internal::ReleaseIdRangeIn(layout, qube, std::string(kHostIdRegistryDir));
}

Result<IdRange> LookupIdRange(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  FileLock lock = TRY(LockIdMap(layout));
  IdMap map = TRY(LoadIdMap(layout));
  if (const uint64_t* base = map.BaseOf(qube)) return ToRange(*base);
  return Err(Error("qube " + qube + " has no id range in " + MapPath(layout), ENOENT));
}

}  // namespace tessera::storage
