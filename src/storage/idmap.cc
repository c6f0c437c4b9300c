// Id ranges: each qube's root maps to its own 65,536 host ids, recorded in
// S/idmap.json so the mapping (and therefore the ownership of its private
// volume) is stable across restarts.
//
//   {"format": 1, "next_base": 268632064, "qubes": {"work": 268435456, ...},
//    "free": [268566528]}
//
// Every read-modify-write holds an exclusive flock on S/idmap.lock and writes
// with WriteFileAtomic, so concurrent allocators (daemon, `tessera cell run`,
// tests) never hand out the same range and a crash leaves the old or new file.
// Recycling: a released range goes to "free" only if the qube's storage
// (S/qubes/<name>, R/cells/<name>) is verified gone, so no file of the old
// owner can surface in the new one; allocation takes "free" (oldest first)
// before growing `next_base`. Without recycling, disposables would exhaust the
// ~61,000 ranges. "free" is a field older readers ignore (they read the file
// fine, and merely drop the list when they rewrite it).

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/idmap_internal.h"
#include "storage/storage.h"

namespace tessera::storage {
namespace {

using json = nlohmann::json;

constexpr uint64_t kLastUsableId = 0xFFFFFFFEull;  // (uid_t)-1 means "no id"

struct IdMap {
  uint64_t next_base = kFirstHostId;
  std::vector<std::pair<std::string, uint64_t>> qubes;  // sorted by insertion/JSON order
  std::vector<uint64_t> free;  // released ranges, oldest first
};

std::string MapPath(const Layout& layout) { return layout.state_dir + "/idmap.json"; }


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

Result<IdMap> ParseIdMap(const std::string& path, const std::string& text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Err(Error(path + ": not a JSON object (refusing to guess id ranges)", EINVAL));
  }
  IdMap map;
  auto format = doc.find("format");
  if (format == doc.end() || !format->is_number_unsigned() || format->get<uint64_t>() != 1) {
    return Err(Error(path + ": field \"format\": expected 1", EINVAL));
  }
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
  auto free = doc.find("free");
  if (free != doc.end()) {
    if (!free->is_array()) return Err(Error(path + ": field \"free\": expected an array", EINVAL));
    for (size_t i = 0; i < free->size(); ++i) {
      const json& f = (*free)[i];
      std::string field = "field \"free[" + std::to_string(i) + "]\"";
      uint64_t base = TRY(CheckRangeBase(f, map.next_base, seen, path + ": " + field,
                                         "is both free and in use (or listed twice)"));
      map.free.push_back(base);
    }
  }
  return map;
}

std::string SerializeIdMap(const IdMap& map) {
  json qubes = json::object();
  for (const auto& [name, base] : map.qubes) qubes[name] = base;
  json doc = {{"format", 1}, {"next_base", map.next_base}, {"qubes", qubes}, {"free", map.free}};
  return doc.dump(2) + "\n";
}

// Holds the exclusive lock on S/idmap.lock for as long as it lives.
class IdMapLock {
 public:
  static Result<IdMapLock> Acquire(const Layout& layout) {
    TRY(MakeDirs(layout.state_dir, 0755));
    std::string path = layout.state_dir + "/idmap.lock";
    UniqueFd fd(TRY(Syscall("open " + path, [&] {
      return ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    })));
    TRY(Syscall("flock " + path, [&] { return ::flock(fd.get(), LOCK_EX); }));
    return IdMapLock(std::move(fd));
  }

 private:
  explicit IdMapLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

Result<IdMap> LoadIdMap(const Layout& layout) {
  std::string path = MapPath(layout);
  auto text = ReadFile(path, 16u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return IdMap{};
    return Err(std::move(text).error());
  }
  return ParseIdMap(path, *text);
}

Status StoreIdMap(const Layout& layout, const IdMap& map) {
  return WriteFileAtomic(MapPath(layout), SerializeIdMap(map), 0644);
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

Result<IdRange> AllocateIdRange(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  IdMapLock lock = TRY(IdMapLock::Acquire(layout));
  IdMap map = TRY(LoadIdMap(layout));
  for (const auto& [name, base] : map.qubes) {
    if (name == qube) return ToRange(base);
  }
  std::vector<internal::ReservedRange> reserved = internal::HostSubIdRanges();
  // A released range first (oldest first), unless the host's subuid/subgid
  // files have since claimed it; such a range simply stays in the list.
  for (auto it = map.free.begin(); it != map.free.end(); ++it) {
    auto usable = internal::NextFreeBase(*it, reserved);
    if (!usable || *usable != *it) continue;
    uint64_t base = *it;
    map.free.erase(it);
    map.qubes.emplace_back(qube, base);
    TRY_CTX(StoreIdMap(layout, map), "record id range of qube " + qube);
    return ToRange(base);
  }
  uint64_t base = TRY(internal::NextFreeBase(map.next_base, reserved));
  map.qubes.emplace_back(qube, base);
  map.next_base = base + kIdsPerQube;
  TRY_CTX(StoreIdMap(layout, map), "record id range of qube " + qube);
  return ToRange(base);
}

Result<IdRange> LookupIdRange(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  IdMapLock lock = TRY(IdMapLock::Acquire(layout));
  IdMap map = TRY(LoadIdMap(layout));
  for (const auto& [name, base] : map.qubes) {
    if (name == qube) return ToRange(base);
  }
  return Err(Error("qube " + qube + " has no id range in " + MapPath(layout), ENOENT));
}

Status ReleaseIdRange(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  IdMapLock lock = TRY(IdMapLock::Acquire(layout));
  IdMap map = TRY(LoadIdMap(layout));
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
  if (gone) {
    map.free.push_back(base);
  } else {
    // Files of this range may survive: forget the name, never reuse the ids.
    Log(LogLevel::kWarn, "id range released while the qube's storage remains; not recycling it",
        {{"qube", qube}, {"base", std::to_string(base)}});
  }
  return StoreIdMap(layout, map);
}

}  // namespace tessera::storage
