#include "cell/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string_view>
#include <thread>

#include "common/fs.h"
#include "common/log.h"
#include "common/syscall.h"
#include "common/text.h"
#include "common/unique_fd.h"

namespace tessera::cell {
namespace {

Status WriteValue(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Err(Error::FromErrno("open " + path));
  TRY(SyscallSize("write " + path, [&] { return ::write(fd.get(), value.data(), value.size()); }));
  return Ok();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Err(Error::FromErrno("mkdir " + path));
  }
  return Ok();
}

Result<uint64_t> ReadKeyed(const std::string& path, std::string_view key) {
  std::string text = TRY(ReadFile(path, 1 << 16));
  for (std::string_view line : SplitLines(text)) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return std::strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
  }
  return Err(Error("no " + std::string(key) + " in " + path, ENOENT));
}

Result<std::vector<pid_t>> ReadPids(const std::string& dir) {
  auto text = ReadFile(dir + "/cgroup.procs", 1 << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return std::vector<pid_t>{};
    return Err(std::move(text).error());
  }
  std::vector<pid_t> pids;
  for (std::string_view line : SplitLines(*text)) {
    if (!line.empty()) pids.push_back(static_cast<pid_t>(std::atol(std::string(line).c_str())));
  }
  return pids;
}

// Kills `pid` only if it is still in `dir`: pidfd first, then the membership
// check, so a recycled pid of an unrelated process is never signalled.
void KillIfMember(pid_t pid, const std::string& dir, const std::string& root) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return;
  auto cg = ReadFile("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16);
  if (!cg) return;
  std::string rel = dir.substr(root.size());  // "/memory/tessera/..." or "/tessera/..."
  // Whatever the hierarchy: the path must be the end of `dir`.
  bool member = false;
  for (const ProcCgroupLine& line : ParseProcCgroup(*cg)) {
    const std::string& path = line.path;
    if (!path.empty() && path != "/" && rel.size() >= path.size() &&
        rel.compare(rel.size() - path.size(), path.size(), path) == 0) {
      member = true;
    }
  }
  if (member) syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

// ---- disk I/O ----------------------------------------------------------------

bool Throttled(const config::IoMax& m) {
  return m.read_bps != 0 || m.write_bps != 0 || m.read_iops != 0 || m.write_iops != 0;
}

// Throttling asked for but impossible here (no block device, no controller):
// the cell still starts; the operator learns why its limits do nothing.
void WarnUnthrottled(const CgroupLimits& limits, const std::string& why) {
  if (!Throttled(limits.io_max)) return;
  Log(LogLevel::kWarn, "io_max not applied", {{"reason", why}});
}

Status WriteIoV2(const std::string& dir, const CgroupLimits& limits) {
  std::string weight = std::to_string(limits.io_weight);
  if (Exists(dir + "/io.weight")) {
    TRY(WriteValue(dir + "/io.weight", "default " + weight));
  } else if (Exists(dir + "/io.bfq.weight")) {
    TRY(WriteValue(dir + "/io.bfq.weight",
                   "default " + std::to_string(std::min<uint32_t>(limits.io_weight, 1000))));
  }
  if (!Throttled(limits.io_max)) return Ok();
  if (limits.io_device.empty()) {
    WarnUnthrottled(limits, "the state directory is on no block device");
  } else if (!Exists(dir + "/io.max")) {
    WarnUnthrottled(limits, "no io controller in " + dir);
  } else {
    TRY(WriteValue(dir + "/io.max", IoMaxLine(limits.io_device, limits.io_max)));
  }
  return Ok();
}

Status WriteIoV1(const std::string& dir, const CgroupLimits& limits) {
  if (dir.empty()) {
    WarnUnthrottled(limits, "no v1 blkio hierarchy");
    return Ok();
  }
  // BFQ's weight is 1..1000 (default 100, as v2); CFQ's legacy one 10..1000
  // (default 500): scaled so that the default stays the default.
  if (Exists(dir + "/blkio.bfq.weight")) {
    TRY(WriteValue(dir + "/blkio.bfq.weight",
                   std::to_string(std::clamp<uint32_t>(limits.io_weight, 1, 1000))));
  } else if (Exists(dir + "/blkio.weight")) {
    TRY(WriteValue(dir + "/blkio.weight",
                   std::to_string(std::clamp<uint64_t>(uint64_t{limits.io_weight} * 5, 10, 1000))));
  }
  if (!Throttled(limits.io_max)) return Ok();
  if (limits.io_device.empty()) {
    WarnUnthrottled(limits, "the state directory is on no block device");
    return Ok();
  }
  const std::pair<const char*, uint64_t> files[] = {
      {"blkio.throttle.read_bps_device", limits.io_max.read_bps},
      {"blkio.throttle.write_bps_device", limits.io_max.write_bps},
      {"blkio.throttle.read_iops_device", limits.io_max.read_iops},
      {"blkio.throttle.write_iops_device", limits.io_max.write_iops}};
  for (const auto& [file, value] : files) {
    // 0 would remove a rule; a fresh cgroup has none.
    if (value == 0) continue;
    if (!Exists(dir + "/" + file)) {
      WarnUnthrottled(limits, "no " + std::string(file) + " in " + dir);
      continue;
    }
    TRY(WriteValue(dir + "/" + file, limits.io_device + " " + std::to_string(value)));
  }
  return Ok();
}

}  // namespace

std::string IoMaxLine(const std::string& device, const config::IoMax& io_max) {
  auto value = [](uint64_t v) { return v == 0 ? std::string("max") : std::to_string(v); };
  return device + " rbps=" + value(io_max.read_bps) + " wbps=" + value(io_max.write_bps) +
         " riops=" + value(io_max.read_iops) + " wiops=" + value(io_max.write_iops);
}

Result<std::string> WholeDiskOf(const std::string& path, const std::string& sys_root) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Err(Error::FromErrno("stat " + path));
  std::string dev = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  std::string node = sys_root + "/dev/block/" + dev;
  if (major(st.st_dev) == 0 || !Exists(node)) {
    return Err(Error(path + " is on no block device (device " + dev + ")", ENODEV));
  }
  if (!Exists(node + "/partition")) return dev;
  // A partition's sysfs directory sits inside its disk's.
  std::string disk = TRY(ReadFile(node + "/../dev", 64));
  while (!disk.empty() && (disk.back() == '\n' || disk.back() == ' ')) disk.pop_back();
  if (disk.empty()) return Err(Error("no disk found for partition " + dev, ENODEV));
  return disk;
}

std::vector<ProcCgroupLine> ParseProcCgroup(std::string_view text) {
  std::vector<ProcCgroupLine> lines;
  for (std::string_view line : SplitLines(text)) {
    size_t a = line.find(':');
    size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    lines.push_back({std::string(line.substr(a + 1, b - a - 1)), std::string(line.substr(b + 1))});
  }
  return lines;
}

bool ProcCgroupLine::Has(std::string_view controller) const {
  std::string_view rest = controllers;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    if (rest.substr(0, comma) == controller) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

std::string InstanceTag(const std::string& runtime_dir) {
  // FNV-1a: stable across builds and processes (std::hash is not guaranteed to be).
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : runtime_dir) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

Result<CgroupSystem> CgroupSystem::Detect(const std::string& root) {
  CgroupSystem sys;
  sys.root = root;
  auto controllers = ReadFile(sys.root + "/cgroup.controllers", 4096);
  if (controllers) {
    std::string c = " " + *controllers + " ";
    for (char& ch : c) {
      if (ch == '\n') ch = ' ';
    }
    if (c.find(" memory ") != std::string::npos && c.find(" pids ") != std::string::npos &&
        c.find(" cpu ") != std::string::npos) {
      sys.version = CgroupVersion::kV2;
      return sys;
    }
  }
  for (const char* ctrl : {"memory", "pids", "cpu"}) {
    if (!Exists(sys.root + "/" + ctrl + "/cgroup.procs")) {
      return Err(Error("no usable cgroups: " + sys.root +
                           " is neither cgroup v2 with memory, pids and cpu controllers nor "
                           "has a v1 " + ctrl + " hierarchy",
                       ENOTSUP));
    }
  }
  sys.version = CgroupVersion::kV1;
  return sys;
}

Result<CellCgroups> CellCgroups::ForQube(const std::string& runtime_dir, const std::string& qube,
                                         const std::string& cgroup_root) {
  CgroupSystem sys = TRY(CgroupSystem::Detect(cgroup_root));
  CellCgroups cg;
  cg.version_ = sys.version;
  cg.root_ = sys.root;
  std::string tail = "/tessera/" + InstanceTag(runtime_dir) + "/" + qube;
  if (sys.version == CgroupVersion::kV2) {
    cg.dirs_ = {sys.root + tail};
    cg.memory_dir_ = cg.dirs_[0];
  } else {
    for (const char* ctrl : {"memory", "pids", "cpu"}) cg.dirs_.push_back(sys.root + "/" + ctrl + tail);
    cg.memory_dir_ = cg.dirs_[0];
    if (Exists(sys.root + "/freezer/cgroup.procs")) {
      cg.freezer_dir_ = sys.root + "/freezer" + tail;
      cg.dirs_.push_back(cg.freezer_dir_);
    }
    if (Exists(sys.root + "/blkio/cgroup.procs")) {
      cg.blkio_dir_ = sys.root + "/blkio" + tail;
      cg.dirs_.push_back(cg.blkio_dir_);
    }
  }
  return cg;
}

CellCgroups CellCgroups::ForUnit(const std::string& dir) {
  CellCgroups cg;
  cg.version_ = CgroupVersion::kV2;
  cg.root_ = kDefaultCgroupRoot;
  cg.dirs_ = {dir};
  cg.memory_dir_ = dir;
  cg.unit_ = true;
  return cg;
}

Result<CellCgroups> CellCgroups::Create(const std::string& runtime_dir, const std::string& qube,
                                        const CgroupLimits& limits,
                                        const std::string& cgroup_root) {
  CellCgroups cg = TRY(ForQube(runtime_dir, qube, cgroup_root));
  // A leftover of a crashed run: its processes die and the directory goes, so
  // the new cell starts from clean counters.
  TRY(cg.KillAll());
  TRY(cg.Remove());
  CgroupSystem sys = TRY(CgroupSystem::Detect(cgroup_root));
  std::string tag = InstanceTag(runtime_dir);
  if (cg.version_ == CgroupVersion::kV2) {
    // Enable the controllers down the path (tessera/ and tessera/<tag>/ hold
    // no processes, so v2's no-internal-process rule is kept).
    std::string base = sys.root + "/tessera";
    TRY(MakeDir(base));
    (void)WriteValue(sys.root + "/cgroup.subtree_control", "+memory +pids +cpu");
    TRY(WriteValue(base + "/cgroup.subtree_control", "+memory +pids +cpu"));
    TRY(MakeDir(base + "/" + tag));
    TRY(WriteValue(base + "/" + tag + "/cgroup.subtree_control", "+memory +pids +cpu"));
    // io where the kernel offers it (best effort: throttling is then skipped
    // with a warning, see WriteIoV2).
    for (const std::string& level : {sys.root, base, base + "/" + tag}) {
      (void)WriteValue(level + "/cgroup.subtree_control", "+io");
    }
    const std::string& d = cg.dirs_[0];
    TRY(MakeDir(d));
    if (limits.memory_bytes != 0) {
      TRY(WriteValue(d + "/memory.max", std::to_string(limits.memory_bytes)));
      (void)WriteValue(d + "/memory.swap.max", "0");
      // One OOM kill takes the cell's whole workload that caused it down
      // together, never anything outside.
    }
    TRY(WriteValue(d + "/pids.max", limits.pids_max ? std::to_string(limits.pids_max) : "max"));
    TRY(WriteValue(d + "/cpu.weight", std::to_string(limits.cpu_weight)));
    TRY(WriteValue(d + "/cpu.max", limits.cpus ? std::to_string(limits.cpus * 100000u) + " 100000"
                                                : "max 100000"));
    TRY(WriteIoV2(d, limits));
    return cg;
  }
  // <hierarchy>/tessera/<tag>/<qube> in every hierarchy (dirs_ holds the last).
  for (const std::string& dir : cg.dirs_) {
    TRY(MakeDir(DirName(DirName(dir))));
    TRY(MakeDir(DirName(dir)));
    TRY(MakeDir(dir));
  }
  const std::string& mem = cg.dirs_[0];
  if (limits.memory_bytes != 0) {
    TRY(WriteValue(mem + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes)));
    // No swap on top of the limit (ignored where swap accounting is off).
    (void)WriteValue(mem + "/memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));
  }
  TRY(WriteValue(cg.dirs_[1] + "/pids.max", limits.pids_max ? std::to_string(limits.pids_max) : "max"));
  // v2 weight 100 == v1 shares 1024.
  uint64_t shares = std::max<uint64_t>(2, uint64_t{limits.cpu_weight} * 1024 / 100);
  TRY(WriteValue(cg.dirs_[2] + "/cpu.shares", std::to_string(shares)));
  TRY(WriteValue(cg.dirs_[2] + "/cpu.cfs_period_us", "100000"));
  TRY(WriteValue(cg.dirs_[2] + "/cpu.cfs_quota_us",
                 limits.cpus ? std::to_string(limits.cpus * 100000u) : "-1"));
  TRY(WriteIoV1(cg.blkio_dir_, limits));
  return cg;
}

Status CellCgroups::Attach(pid_t pid) const {
  for (const auto& d : dirs_) TRY(WriteValue(d + "/cgroup.procs", std::to_string(pid)));
  return Ok();
}

std::thread CellCgroups::WarmUpAttach() {
  auto sys = CgroupSystem::Detect();
  if (!sys || sys->version != CgroupVersion::kV1) return {};
  return std::thread([root = sys->root] {
    auto self = ReadFile("/proc/thread-self/cgroup", 65536);
    if (!self) return;
    for (const ProcCgroupLine& line : ParseProcCgroup(*self)) {
      if (!line.Has("memory")) continue;
      (void)WriteValue(root + "/memory" + line.path + "/tasks", std::to_string(::gettid()));
      return;
    }
  });
}

Result<UniqueFd> CellCgroups::OpenV2Dir() const {
  if (version_ != CgroupVersion::kV2) return Err(Error("not a cgroup v2 cell", EINVAL));
  UniqueFd fd(::open(dirs_[0].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Err(Error::FromErrno("open " + dirs_[0]));
  return fd;
}

Result<std::vector<pid_t>> CellCgroups::Pids() const {
  std::vector<pid_t> all;
  for (const auto& d : dirs_) {
    auto pids = TRY(ReadPids(d));
    for (pid_t p : pids) {
      if (std::find(all.begin(), all.end(), p) == all.end()) all.push_back(p);
    }
  }
  return all;
}

Status CellCgroups::KillAll(std::chrono::milliseconds timeout) const {
  if (!Exists(dirs_[0])) return Ok();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (version_ == CgroupVersion::kV2 && Exists(dirs_[0] + "/cgroup.kill")) {
    TRY(WriteValue(dirs_[0] + "/cgroup.kill", "1"));
  }
  for (int round = 0;; ++round) {
    std::vector<pid_t> pids = TRY(Pids());
    if (pids.empty()) return Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return Err(Error("processes of the cell survive SIGKILL in " + dirs_[0], EBUSY));
    }
    // v1: freezing first stops a fork bomb from outrunning the kill loop.
    bool frozen = !freezer_dir_.empty() && Exists(freezer_dir_) &&
                  WriteValue(freezer_dir_ + "/freezer.state", "FROZEN").has_value();
    for (const auto& d : dirs_) {
      auto members = ReadPids(d);
      if (!members) continue;
      for (pid_t p : *members) KillIfMember(p, d, root_);
    }
    if (frozen) (void)WriteValue(freezer_dir_ + "/freezer.state", "THAWED");
    std::this_thread::sleep_for(std::chrono::milliseconds(round < 10 ? 1 : 10));
  }
}

Status CellCgroups::Remove() const {
  if (unit_) {
    // systemd stops an empty scope and removes its cgroup; removing it under
    // systemd's feet is only the fallback for a manager that does not.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Exists(dirs_[0]) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (::rmdir(dirs_[0].c_str()) != 0 && errno != ENOENT) {
      return Err(Error::FromErrno("rmdir " + dirs_[0]));
    }
    return Ok();
  }
  for (const auto& d : dirs_) {
    for (int attempt = 0;; ++attempt) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      // The kernel drops a dead task's membership shortly after it is reaped.
      if (errno == EBUSY && attempt < 200) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      return Err(Error::FromErrno("rmdir " + d));
    }
    // The per-instance parent goes when its last cell does (ENOTEMPTY/EBUSY: others live).
    std::string parent = DirName(d);
    (void)::rmdir(parent.c_str());
  }
  return Ok();
}

Result<uint64_t> CellCgroups::OomKills() const {
  if (version_ == CgroupVersion::kV2) return ReadKeyed(memory_dir_ + "/memory.events", "oom_kill");
  return ReadKeyed(memory_dir_ + "/memory.oom_control", "oom_kill");
}

Result<uint64_t> CellCgroups::MemoryUsage() const {
  std::string file = memory_dir_ + (version_ == CgroupVersion::kV2 ? "/memory.current"
                                                                   : "/memory.usage_in_bytes");
  std::string text = TRY(ReadFile(file, 4096));
  return std::strtoull(text.c_str(), nullptr, 10);
}

Result<backend::MemoryEvents> ReadMemoryEvents(const std::string& dir) {
  backend::MemoryEvents events;
  bool v2 = Exists(dir + "/memory.events");
  events.oom_kills =
      TRY(ReadKeyed(dir + (v2 ? "/memory.events" : "/memory.oom_control"), "oom_kill"));
  std::string limit = TRY(ReadFile(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), 64));
  uint64_t bytes = std::strtoull(limit.c_str(), nullptr, 10);
  // "max" (v2) and v1's page-rounded LONG_MAX both mean no limit.
  events.limit_bytes = limit.rfind("max", 0) == 0 || bytes >= (uint64_t{1} << 62) ? 0 : bytes;
  return events;
}

}  // namespace tessera::cell
