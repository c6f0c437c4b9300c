#include "cell/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string_view>
#include <thread>

#include "common/fs.h"
#include "common/syscall.h"
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
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return std::strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
    pos = end + 1;
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
  size_t pos = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    if (end > pos) pids.push_back(static_cast<pid_t>(std::atol(text->substr(pos, end - pos).c_str())));
    pos = end + 1;
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
  // v1 lines are "N:ctrl:/path", v2 "0::/path": match the path suffix of `dir`.
  bool member = false;
  size_t pos = 0;
  while (pos < cg->size()) {
    size_t end = cg->find('\n', pos);
    if (end == std::string::npos) end = cg->size();
    std::string line = cg->substr(pos, end - pos);
    size_t c2 = line.find(':', line.find(':') + 1);
    if (c2 != std::string::npos) {
      std::string path = line.substr(c2 + 1);
      if (!path.empty() && rel.size() >= path.size() &&
          rel.compare(rel.size() - path.size(), path.size(), path) == 0 && path != "/") {
        member = true;
      }
    }
    pos = end + 1;
  }
  if (member) syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

}  // namespace

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
  }
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
    return cg;
  }
  const char* ctrls[] = {"memory", "pids", "cpu", "freezer"};
  for (size_t i = 0; i < cg.dirs_.size(); ++i) {
    std::string base = sys.root + "/" + ctrls[i] + "/tessera";
    TRY(MakeDir(base));
    TRY(MakeDir(base + "/" + tag));
    TRY(MakeDir(cg.dirs_[i]));
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
    // Lines "ID:CONTROLLERS:PATH"; find the memory hierarchy's.
    size_t pos = 0;
    while (pos < self->size()) {
      size_t end = self->find('\n', pos);
      if (end == std::string::npos) end = self->size();
      std::string line = self->substr(pos, end - pos);
      pos = end + 1;
      size_t a = line.find(':');
      size_t b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      std::string ctrls = "," + line.substr(a + 1, b - a - 1) + ",";
      if (ctrls.find(",memory,") == std::string::npos) continue;
      std::string dir = root + "/memory" + line.substr(b + 1);
      (void)WriteValue(dir + "/tasks", std::to_string(::gettid()));
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

}  // namespace tessera::cell
