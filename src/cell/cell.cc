// Cell lifecycle on the host side: prepare, clone, map ids, hand over to the
// child (child_setup.cc), record, exec commands via the agent, stop, clean up.

#include "cell/cell.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "backend/launcher.h"
#include "cell/cell_record.h"
#include "cell/cgroup_units.h"
#include "cell/cgroups.h"
#include "cell/child_setup.h"
#include "cell/closure_mount.h"
#include "cell/credentials.h"
#include "cell/fd_passing.h"
#include "cell/seccomp_filter.h"
#include "cell/start_steps.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/names.h"
#include "common/rearm_pages.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "storage/generations.h"
#include "storage/id_shift.h"
#include "storage/private_volume.h"

namespace tessera::cell {
namespace {

// Wall time of each start-up phase, logged at debug level
// (TESSERA_LOG_LEVEL=debug) so slow starts can be explained.
class PhaseClock {
 public:
  void Mark(const char* phase) {
    auto now = std::chrono::steady_clock::now();
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%s=%.2f", text_.empty() ? "" : " ", phase,
                  std::chrono::duration<double, std::milli>(now - last_).count());
    text_ += buf;
    last_ = now;
  }
  const std::string& text() const { return text_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::string text_;
};

using nlohmann::json;

constexpr const char* kRecordFile = "cell.json";
constexpr const char* kControlSocket = "control.sock";

Status CheckName(const std::string& name) { return ValidateName(name); }

}  // namespace

Cell::Cell(Cell&& other) noexcept { *this = std::move(other); }

Cell& Cell::operator=(Cell&& other) noexcept {
  if (this != &other) {
    layout_ = std::move(other.layout_);
    name_ = std::move(other.name_);
    control_path_ = std::move(other.control_path_);
    cgroups_ = std::move(other.cgroups_);
    is_child_ = other.is_child_;
    init_pid_ = std::exchange(other.init_pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    stopped_ = std::exchange(other.stopped_, true);
    seccomp_listener_ = std::move(other.seccomp_listener_);
    seccomp_program_ = std::move(other.seccomp_program_);
  }
  return *this;
}

Cell::~Cell() = default;

Result<Cell> Cell::Start(const storage::Layout& layout, const CellSpec& spec,
                         const CellOptions& options) {
  storage::PreparedStorage prepared =
      TRY_CTX(storage::PrepareQubeStorage(layout, backend::StorageRequestFor(spec)),
              "start cell " + spec.name + ": storage");
  return Start(layout, spec, prepared, options);
}

Result<Cell> Cell::Start(const storage::Layout& layout_in, const CellSpec& spec,
                         const storage::PreparedStorage& prepared, const CellOptions& options) {
  TRY(CheckName(spec.name));
  storage::Layout layout = layout_in;
  TRY(MakeDirs(layout.state_dir, 0755));
  TRY(MakeDirs(layout.runtime_dir, 0755));
  layout.state_dir = TRY(RealPath(layout.state_dir));
  layout.runtime_dir = TRY(RealPath(layout.runtime_dir));
  const std::string& name = spec.name;
  auto ctx = [&](const std::string& what) { return "start cell " + name + ": " + what; };
  PhaseClock clock;

  // The v1 cgroup attach below waits for an RCU grace period when no attach
  // happened lately; a no-op attach started now lets that wait overlap with
  // the preparation.
  std::thread attach_warmup = options.units ? std::thread() : CellCgroups::WarmUpAttach();
  auto join_warmup = ScopeGuard([&] {
    if (attach_warmup.joinable()) attach_warmup.join();
  });
  QubeLock lock = TRY_CTX(QubeLock::Acquire(layout, name, /*wait=*/false), ctx("lock"));
  // A running cell of the same name is never replaced; a dead one's leftovers are.
  if (auto adopted = Adopt(layout, name); adopted) {
    return Err(Error(ctx("already running (init pid " + std::to_string(adopted->init_pid()) + ")"),
                     EBUSY));
  }
  TRY_CTX(CleanupLocked(layout, name), ctx("clean up a previous run"));
  clock.Mark("leftovers");

  // Storage was made ready by its owner (storage::PrepareQubeStorage, called
  // by the launcher): the id range, the root tree, the private volume.
  const storage::IdRange& ids = prepared.ids;
  const std::string& root_path = prepared.root_path;
  const std::vector<std::string>& host_ro_binds = prepared.host_ro_binds;
  if (ids.count == 0 || root_path.empty() || prepared.private_volume.empty()) {
    return Err(Error(ctx("storage not prepared"), EINVAL));
  }

  // Everything below is undone by `undo` unless the start succeeds.
  std::string scratch = TRY_CTX(storage::CreateScratch(layout, name), ctx("scratch dir"));
  std::optional<CellCgroups> cgroups;
  auto undo = ScopeGuard([&] {
    if (cgroups) {
      (void)cgroups->KillAll();
      (void)cgroups->Remove();
    }
    (void)storage::RemoveScratch(layout, name);
    // Nothing runs on the generation the storage recorded for this start,
    // nor on the volume it opened.
    (void)storage::ReleaseGenerations(layout, name);
    (void)storage::ClosePrivateVolume(layout, name);
  });

  // Mount points for the child, owned by the qube's root so it can use them
  // after dropping host uid 0.
  std::string mnt = scratch + "/mnt";
  TRY_CTX(MakeOwnedDir(mnt, ids.base, 0700), ctx("scratch"));
  TRY_CTX(MakeOwnedDir(mnt + "/root", ids.base, 0755), ctx("scratch"));
  // The template qube runs on an overlay too: its generation below its
  // persistent changes (storage/generations.h).
  bool overlay = spec.root == RootKind::kOverlay || spec.root == RootKind::kTemplate;
  if (spec.root == RootKind::kTemplate && prepared.changes_path.empty()) {
    return Err(Error(ctx("storage prepared without the template's changes directory"), EINVAL));
  }
  if (overlay) {
    TRY_CTX(MakeOwnedDir(mnt + "/lower", ids.base, 0755), ctx("scratch"));
    TRY_CTX(MakeOwnedDir(mnt + "/upper", ids.base, 0755), ctx("scratch"));
  }

  CgroupLimits limits;
  limits.memory_bytes = spec.memory_mib << 20;
  limits.pids_max = spec.pids_max;
  limits.cpu_weight = spec.cpu_weight;
  limits.cpus = spec.cpus;
  limits.io_weight = spec.io_weight;
  limits.io_max = spec.io_max;
  // Throttling applies to the disk of the state dir (templates, private volumes).
  if (auto disk = WholeDiskOf(layout.state_dir); disk) limits.io_device = *disk;
  // A unit manager makes the cgroup once the init exists (below).
  std::string unit = options.units ? ScopeUnitName(layout.runtime_dir, name) : "";
  if (!options.units) {
    cgroups = TRY_CTX(CellCgroups::Create(layout.runtime_dir, name, limits), ctx("cgroups"));
  }
  clock.Mark("cgroups");

  // The filter depends only on the feature flag and the mode: each variant is
  // compiled once per process (the daemon starts many cells) and kept in the
  // runtime dir for the next process of this binary (`tessera cell run`).
  std::shared_ptr<const SeccompProgram> seccomp = TRY_CTX(
      CachedSeccompFilter({.nested_userns = spec.nested_userns, .mode = options.seccomp_mode},
                          layout.runtime_dir + "/seccomp"),
      ctx("seccomp filter"));
  clock.Mark("seccomp");

  std::string control_path = scratch + "/" + kControlSocket;
  UniqueFd control = TRY_CTX(MakeControlSocket(control_path), ctx("control socket"));

  std::string agent_path = AgentPath(options);
  UniqueFd agent(::open(agent_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!agent) return Err(Error::FromErrno(ctx("open agent " + agent_path)));

  // Detached mounts, made here in the host namespace where the sources are
  // resolved safely; the child only moves them into place.
  UniqueFd root_tree;
  {
    UniqueFd root_dir(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root_dir) return Err(Error::FromErrno(ctx("open root tree " + root_path)));
    root_tree = TRY_CTX(CloneTree(root_dir.get(), "", false, root_path), ctx("root tree"));
  }
  UniqueFd upper_tree;
  if (spec.root == RootKind::kTemplate) {
    const std::string& changes = prepared.changes_path;
    UniqueFd dir(::open(changes.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return Err(Error::FromErrno(ctx("open " + changes)));
    upper_tree = TRY_CTX(CloneTree(dir.get(), "", false, changes), ctx("template changes"));
  }
  std::vector<UniqueFd> owned_mounts;
  std::vector<std::string> targets;  // storage for PreparedMount::target
  std::vector<bool> is_file;
  auto add_mount = [&](UniqueFd fd, std::string target, bool file) {
    owned_mounts.push_back(std::move(fd));
    targets.push_back(std::move(target));
    is_file.push_back(file);
  };
  for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
    std::string path = std::string("/dev/") + node;
    UniqueFd m = TRY_CTX(CloneTree(AT_FDCWD, path, false, path), ctx("device node"));
    TRY_CTX(SetMountAttr(m.get(), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false), ctx(path));
    add_mount(std::move(m), std::string("dev/") + node, true);
  }
  // Host paths are bound without an idmap: their files keep host owners,
  // which the cell's user namespace does not map, so they appear owned by the
  // overflow id and access is decided by their "other" permission bits, as
  // for an unprivileged host user (CAP_DAC_OVERRIDE inside the cell does not
  // apply to unmapped owners). An idmap would make host-root files the qube
  // root's own, private ones (0600 under /usr/local) included.
  auto add_host_bind = [&](const std::string& host, const std::string& cell_path) -> Status {
    if (host.empty() || host[0] != '/' || cell_path.empty() || cell_path[0] != '/') {
      return Err(Error("bind paths must be absolute: " + host + " -> " + cell_path, EINVAL));
    }
    struct stat st;
    if (::stat(host.c_str(), &st) != 0) return Err(Error::FromErrno("stat " + host));
    UniqueFd m = TRY(CloneTree(AT_FDCWD, host, true, host));
    TRY(SetMountAttr(m.get(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true));
    add_mount(std::move(m), cell_path.substr(1), !S_ISDIR(st.st_mode));
    return Ok();
  };
  for (const auto& p : host_ro_binds) TRY_CTX(add_host_bind(p, p), ctx("template host bind"));
  if (!prepared.closure_image.empty()) {
    UniqueFd store = TRY_CTX(MountClosureImage(prepared.closure_image, prepared.closure_image_kind),
                             ctx("Nix closure"));
    add_mount(std::move(store), "nix/store", false);
  }
  for (const auto& b : spec.extra_ro_binds) {
    TRY_CTX(add_host_bind(b.host_path, b.cell_path), ctx("bind"));
  }
  {
    const std::string& priv = prepared.private_volume;
    UniqueFd priv_dir(::open(priv.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!priv_dir) return Err(Error::FromErrno(ctx("open " + priv)));
    // An app qube's /usr/local lives on its volume (a template or standalone
    // qube keeps its root's own).
    struct VolumeBind {
      const char* sub;
      const char* target;
    };
    std::vector<VolumeBind> binds = {{"home", "home"}, {"rw", "rw"}};
    // Over a read-only host /usr (a `host` template) only where the host
    // has a /usr/local to mount on (NixOS has none).
    bool host_usr =
        std::find(host_ro_binds.begin(), host_ro_binds.end(), "/usr") != host_ro_binds.end();
    struct stat usr_local;
    if (spec.root == RootKind::kOverlay &&
        (!host_usr || (::stat("/usr/local", &usr_local) == 0 && S_ISDIR(usr_local.st_mode)))) {
      binds.push_back({"usrlocal", "usr/local"});
    }
    for (const VolumeBind& b : binds) {
      // The volume's content is the qube's: never follow its symlinks.
      UniqueFd src = OpenBeneath(priv_dir.get(), b.sub, O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (!src) {
        return Err(Error::FromErrno(ctx(priv + "/" + b.sub + " (must be a real directory)")));
      }
      UniqueFd m =
          TRY_CTX(CloneTree(src.get(), "", false, priv + "/" + b.sub), ctx("private volume"));
      TRY_CTX(SetMountAttr(m.get(), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false),
              ctx("private volume"));
      add_mount(std::move(m), b.target, false);
    }
  }

  // The qube tools, read-only like a host bind, mounted on the qube's fresh
  // /run by the child (a mount made here would be hidden by that tmpfs).
  UniqueFd tools_tree;
  if (std::string tools = ToolsDir(options); !tools.empty()) {
    tools_tree = TRY_CTX(CloneTree(AT_FDCWD, tools, true, tools), ctx("qube tools"));
    TRY_CTX(SetMountAttr(tools_tree.get(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                         true),
            ctx("qube tools"));
  }

  UniqueFd credentials_tree;
  if (!spec.credentials.empty()) {
    credentials_tree =
        TRY_CTX(StageCredentials(spec.credentials, scratch, ids), ctx("credentials"));
  }

  clock.Mark("mounts");
  // The plan: every string and array the child reads is built now.
  std::string overlay_options =
      upper_tree ? "lowerdir=lower,upperdir=upper/upper,workdir=upper/work,userxattr"
                 : "lowerdir=lower,upperdir=upper/u,workdir=upper/w,userxattr";
  std::string upper_size = std::to_string(spec.scratch_mib) + "m";
  std::string hostname = spec.hostname.empty() ? name : spec.hostname;
  std::string identity_map = "0 0 " + std::to_string(ids.count) + "\n";
  // The child opens the qube's inner user and mount namespaces (step 12b of
  // child_setup.cc) and hands them to the agent under these numbers, which
  // are reserved here (as /dev/null) so the agent's argv can be built now.
  UniqueFd inner_userns_slot(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd inner_mntns_slot(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!inner_userns_slot || !inner_mntns_slot) return Err(Error::FromErrno(ctx("open /dev/null")));
  std::string control_arg = "--control-fd=" + std::to_string(control.get());
  std::string userns_arg = "--userns-fd=" + std::to_string(inner_userns_slot.get());
  std::string mntns_arg = "--mntns-fd=" + std::to_string(inner_mntns_slot.get());
  // Commands join the inner user namespace with setns, which gives them a
  // full bounding set: the agent drops the same capabilities again for them.
  char drop_hex[32];
  std::snprintf(drop_hex, sizeof(drop_hex), "%llx",
                static_cast<unsigned long long>(DefaultDroppedCaps()));
  std::string drop_arg = std::string("--drop-caps=") + drop_hex;
  std::string argv0 = "tessera-agent";
  char* agent_argv[] = {argv0.data(),    control_arg.data(), userns_arg.data(),
                        mntns_arg.data(), drop_arg.data(),    nullptr};
  std::string env_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char* agent_envp[] = {env_path.data(), nullptr};
  int cap_last = 40;
  if (auto text = ReadFile("/proc/sys/kernel/cap_last_cap", 64))
    cap_last = std::atoi(text->c_str());

  int sync[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) != 0) {
    return Err(Error::FromErrno(ctx("socketpair")));
  }
  UniqueFd sync_parent(sync[0]);
  UniqueFd sync_child(sync[1]);

  ChildPlan plan;
  plan.sync_fd = sync_child.get();
  plan.parent_sync_fd = sync_parent.get();
  plan.mnt_dir = mnt.c_str();
  plan.overlay = overlay;
  plan.root_tree_fd = root_tree.get();
  plan.upper_tree_fd = upper_tree ? upper_tree.get() : -1;
  plan.overlay_options = overlay_options.c_str();
  plan.upper_size = upper_size.c_str();
  plan.hostname = hostname.c_str();
  plan.identity_map = identity_map.c_str();
  for (size_t i = 0; i < owned_mounts.size(); ++i) {
    plan.mounts.push_back({owned_mounts[i].get(), targets[i].c_str(), is_file[i]});
  }
  if (tools_tree) plan.run_mounts.push_back({tools_tree.get(), "run/tessera/tools", false});
  if (credentials_tree) {
    plan.run_mounts.push_back({credentials_tree.get(), "run/credentials", false});
  }
  plan.agent_fd = agent.get();
  plan.agent_argv = agent_argv;
  plan.agent_envp = agent_envp;
  plan.control_fd = control.get();
  plan.inner_userns_fd = inner_userns_slot.get();
  plan.inner_mntns_fd = inner_mntns_slot.get();
  plan.cap_last = cap_last;
  plan.drop_caps = DefaultDroppedCaps();
  plan.seccomp = seccomp.get();
  plan.rlimits = ChildRlimits(spec);
  std::string pty_max = std::to_string(spec.pty_max);
  plan.pty_max = pty_max.c_str();
  plan.die_with_starter = options.on_starter_death == StarterDeath::kCellDies;

  // The warm-up thread must be gone before the clone: a thread holding a libc
  // lock (malloc) at clone time would leave that lock held in the child.
  if (attach_warmup.joinable()) attach_warmup.join();
  // clone3 like fork (no new stack), with a pidfd for race-free signalling.
  int pidfd_raw = -1;
  clone_args args{};
  // Net, uts and ipc namespaces are made later by the child, inside the nested
  // namespaces of the qube (child_setup.cc step 12b).
  args.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd_raw);
  args.exit_signal = SIGCHLD;
  // v2: born in its cgroup. v1 (or a kernel refusing CLONE_INTO_CGROUP): attached below.
  bool attached = false;
  long rc = -1;
  if (cgroups && cgroups->version() == CgroupVersion::kV2) {
    if (auto dir = cgroups->OpenV2Dir(); dir) {
      clone_args into = args;
      into.flags |= CLONE_INTO_CGROUP;
      into.cgroup = static_cast<uint64_t>(dir->get());
      rc = syscall(SYS_clone3, &into, sizeof(into));
      attached = rc >= 0;
    }
  }
  if (rc < 0) rc = syscall(SYS_clone3, &args, sizeof(args));
  if (rc < 0) return Err(Error::FromErrno(ctx("clone3")));
  if (rc == 0) RunChild(plan);  // never returns
  pid_t pid = static_cast<pid_t>(rc);
  UniqueFd pidfd(pidfd_raw);
  // Test hook: the starter dies between clone and release (kill -9 of the
  // daemon at the worst moment); the child must not outlive it.
  if (options.test_hooks.exit_after_clone) ::_exit(86);
  clock.Mark("clone");
  sync_child.reset();
  auto kill_child = ScopeGuard([&] { KillChild(pidfd.get(), pid); });

  // Parent's half of the handshake. uid/gid maps first: the child's
  // namespace ids and the idmapped template depend on them.
  TRY_CTX(WriteIdMap(pid, "uid_map", ids.base, ids.count), ctx("uid_map"));
  TRY_CTX(WriteIdMap(pid, "gid_map", ids.base, ids.count), ctx("gid_map"));
  clock.Mark("maps");
  {
    std::string ns = "/proc/" + std::to_string(pid) + "/ns/user";
    UniqueFd userns(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!userns) return Err(Error::FromErrno(ctx("open " + ns)));
    // Host-root-owned template files appear owned by the qube's root; app
    // qubes see the template read-only (their writes go to the overlay upper).
    // A standalone root is shifted into the qube's range on disk: no idmap.
    if (spec.root == RootKind::kStandalone) {
      TRY_CTX(SetMountAttr(root_tree.get(), MOUNT_ATTR_NODEV, false), ctx("standalone root tree"));
    } else {
      // A generation is never written: read-only for the template qube too.
      TRY_CTX(SetMountAttr(root_tree.get(), MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY,
                           false, userns.get()),
              ctx("idmap root tree"));
    }
    if (upper_tree) {
      // Written as the qube's root, stored as host root: a commit copies it
      // into a generation as it is.
      TRY_CTX(
          SetMountAttr(upper_tree.get(), MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV, false, userns.get()),
          ctx("idmap template changes"));
    }
  }
  // cgroups before the child runs any setup: every page and process it makes
  // from here on is charged and limited.
  clock.Mark("idmount");
  if (options.units) {
    std::string dir = TRY_CTX(options.units->Place(unit, "tessera qube " + name, pid, limits),
                              ctx("cgroup unit " + unit));
    cgroups = CellCgroups::ForUnit(dir);
    clock.Mark("unit");
  } else if (!attached) {
    TRY_CTX(cgroups->Attach(pid), ctx("attach to cgroups"));
  }
  LowerAgentOomScore(pid, name);
  RaiseChildHardLimits(pid, plan.rlimits, name);
  clock.Mark("attach");
  char go = 1;
  if (::send(sync_parent.get(), &go, 1, MSG_NOSIGNAL) != 1) {
    return Err(Error::FromErrno(ctx("release child")));
  }
  // EOF = the agent was exec'd (the child's end is CLOEXEC); a message = a
  // failed step, or first (kNotify) the seccomp listener.
  UniqueFd seccomp_listener =
      TRY_CTX(AwaitAgentExec(sync_parent.get(), seccomp->mode == SeccompMode::kNotify),
              "start cell " + name);
  clock.Mark("child");
  // The agent has exec'd: this process's pages are its own again, but each
  // would trap once on its next write (common/rearm_pages.h).
  if (Status rearmed = RearmHeapAfterClone(); !rearmed) {
    Log(LogLevel::kDebug, "pages not re-armed after the clone",
        {{"qube", name}, {"error", rearmed.error().ToString()}});
  }
  clock.Mark("rearm");

  CellRecord record;
  record.name = name;
  record.pid = pid;
  record.start_time = TRY_CTX(StartTime(pid), ctx("read init start time"));
  record.cgroups = cgroups->dirs();
  record.cgroup_unit = unit;
  TRY_CTX(WriteCellRecord(scratch + "/" + kRecordFile, record), ctx("write record"));

  kill_child.Dismiss();
  undo.Dismiss();
  Cell cell;
  cell.layout_ = layout;
  cell.name_ = name;
  cell.control_path_ = control_path;
  cell.cgroups_ = std::move(*cgroups);
  cell.is_child_ = true;
  cell.init_pid_ = pid;
  cell.pidfd_ = std::move(pidfd);
  cell.seccomp_listener_ = std::move(seccomp_listener);
  cell.seccomp_program_ = seccomp;
  clock.Mark("record");
  Log(LogLevel::kDebug, "cell started",
      {{"qube", name}, {"pid", std::to_string(pid)}, {"phases_ms", clock.text()}});
  return cell;
}

Result<Cell> Cell::Adopt(const storage::Layout& layout, const std::string& name) {
  TRY(CheckName(name));
  std::string scratch = layout.ScratchDir(name);
  CellRecord record = TRY(ReadCellRecord(scratch + "/" + kRecordFile));
  if (record.name != name || record.pid <= 1) {
    return Err(Error("cell record of " + name + " names another cell", EPROTO));
  }
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, record.pid, 0)));
  if (!pidfd) return Err(Error::FromErrno("cell " + name + ": init is gone"));
  // Start time checked after the pidfd is held: if it matches now, the pidfd
  // refers to the cell's init and cannot be recycled later.
  auto start = StartTime(record.pid);
  if (!start || *start != record.start_time) {
    return Err(Error("cell " + name + ": init is gone (pid reused)", ESRCH));
  }
  if (PidfdExited(pidfd.get(), 0)) return Err(Error("cell " + name + ": init has exited", ESRCH));
  Cell cell;
  cell.cgroups_ = record.cgroup_unit.empty() ? TRY(CellCgroups::ForQube(layout.runtime_dir, name))
                                             : CellCgroups::ForUnit(record.cgroups[0]);
  cell.layout_ = layout;
  cell.name_ = name;
  cell.control_path_ = scratch + "/" + kControlSocket;
  // A child of ours only if we started it (same process, e.g. tests).
  cell.is_child_ = false;
  cell.init_pid_ = record.pid;
  cell.pidfd_ = std::move(pidfd);
  return cell;
}

Status Cell::Cleanup(const storage::Layout& layout, const std::string& name) {
  TRY(CheckName(name));
  QubeLock lock = TRY(QubeLock::Acquire(layout, name, /*wait=*/true));
  TRY(CleanupLocked(layout, name));
  return ReleaseStorage(layout, name);
}

Status Cell::CleanupLocked(const storage::Layout& layout, const std::string& name) {
  auto record = ReadCellRecord(layout.ScratchDir(name) + "/" + kRecordFile);
  if (record) {
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, record->pid, 0)));
    auto start = StartTime(record->pid);
    if (pidfd && start && *start == record->start_time) {
      syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      PidfdExited(pidfd.get(), 5000);
      // Reap it if it happens to be our child; otherwise init does.
      (void)::waitpid(record->pid, nullptr, WNOHANG | __WALL);
    }
  }
  TRY(RemoveLeftoverCgroups(layout, name, record ? &*record : nullptr));
  TRY(storage::RemoveScratch(layout, name));
  return Ok();
}

Status Cell::RemoveLeftoverCgroups(const storage::Layout& layout, const std::string& name,
                                   const CellRecord* record) {
  std::vector<CellCgroups> leftovers;
  // The scope its record names, or one a start killed between the unit's
  // creation and the record left (where systemd puts it: in our slice).
  std::string scope = record && record->name == name && !record->cgroup_unit.empty()
                          ? record->cgroups[0]
                          : std::string(kDefaultCgroupRoot) + "/" + kQubeSlice + "/" +
                                ScopeUnitName(layout.runtime_dir, name);
  struct stat st;
  if (::stat(scope.c_str(), &st) == 0) leftovers.push_back(CellCgroups::ForUnit(scope));
  // tessera's own: none to look for where there is no usable hierarchy
  // (a systemd host whose cgroups are all systemd's).
  if (auto own = CellCgroups::ForQube(layout.runtime_dir, name); own) {
    leftovers.push_back(std::move(*own));
  } else if (own.error().errno_value() != ENOTSUP) {
    return Err(std::move(own).error());
  }
  for (const CellCgroups& cg : leftovers) {
    TRY(cg.KillAll());
    TRY(cg.Remove());
  }
  return Ok();
}

Status Cell::ReleaseStorage(const storage::Layout& layout, const std::string& name) {
  // Only once nothing of the cell runs: a template qube's changes are
  // committed here, and generations nothing uses any more are collected;
  // the private volume image is unmounted.
  Status released = storage::ReleaseGenerations(layout, name);
  Status closed = storage::ClosePrivateVolume(layout, name);
  return released ? closed : released;
}

Result<std::vector<std::string>> Cell::List(const storage::Layout& layout) {
  std::vector<std::string> names;
  std::string dir = layout.runtime_dir + "/cells";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return names;
    return Err(Error::FromErrno("open " + dir));
  }
  auto close_dir = ScopeGuard([&] { ::closedir(d); });
  while (dirent* e = ::readdir(d)) {
    // Lock files (".name.lock") and "." / ".." are not cells.
    if (e->d_name[0] == '.' || e->d_type != DT_DIR) continue;
    if (CheckName(e->d_name)) names.emplace_back(e->d_name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Cell::Running() const {
  if (stopped_ || !pidfd_) return false;
  return !PidfdExited(pidfd_.get(), 0);
}

Result<UniqueFd> Cell::OpenChannel() const {
  if (stopped_) return Err(Error("cell " + name_ + " is stopped", ESRCH));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (control_path_.size() >= sizeof(addr.sun_path))
    return Err(Error("control path too long", ENAMETOOLONG));
  std::memcpy(addr.sun_path, control_path_.c_str(), control_path_.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Err(Error::FromErrno("socket"));
  TRY(Syscall("connect " + control_path_, [&] {
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }));
  return fd;
}

Result<UniqueFd> Cell::OpenNetworkNamespace() const {
  if (stopped_ || !Running()) return Err(Error("cell " + name_ + " is not running", ESRCH));
  std::string path = "/proc/" + std::to_string(init_pid_) + "/ns/net";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Err(Error::FromErrno("open " + path));
  // The pid could have been reused between the check and the open: the
  // pidfd says whether init still is the process we opened.
  if (PidfdExited(pidfd_.get(), 0)) return Err(Error("cell " + name_ + " exited", ESRCH));
  return fd;
}

Result<backend::MemoryEvents> Cell::Memory() const {
  if (cgroups_.dirs().empty()) return Err(Error("cell " + name_ + " has no cgroups", ENOENT));
  return ReadMemoryEvents(cgroups_.memory_dir());
}

Status Cell::Stop(std::chrono::milliseconds grace) {
  if (stopped_) return Ok();
  PhaseClock clock;
  QubeLock lock = TRY_CTX(QubeLock::Acquire(layout_, name_, /*wait=*/true), "stop cell " + name_);
  if (pidfd_ && !PidfdExited(pidfd_.get(), 0)) {
    // The agent terminates the cell's processes and exits on SIGTERM.
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGTERM, nullptr, 0);
    if (!PidfdExited(pidfd_.get(), static_cast<int>(grace.count()))) {
      // SIGKILL to a pid namespace's init kills every process in it.
      syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
      PidfdExited(pidfd_.get(), 5000);
    }
  }
  if (is_child_ && init_pid_ > 0) {
    while (::waitpid(init_pid_, nullptr, __WALL) < 0 && errno == EINTR) {
    }
  } else if (init_pid_ > 0) {
    // Adopted: init is normally the host init's to reap, but if this process
    // is its parent after all, reap it (the pidfd pins the pid until then).
    (void)::waitpid(init_pid_, nullptr, WNOHANG | __WALL);
  }
  clock.Mark("init");
  TRY_CTX(cgroups_.KillAll(), "stop cell " + name_);
  clock.Mark("kill");
  TRY_CTX(cgroups_.Remove(), "stop cell " + name_);
  clock.Mark("cgroups");
  TRY_CTX(storage::RemoveScratch(layout_, name_), "stop cell " + name_);
  clock.Mark("scratch");
  stopped_ = true;
  pidfd_.reset();
  TRY_CTX(ReleaseStorage(layout_, name_), "stop cell " + name_);
  clock.Mark("storage");
  Log(LogLevel::kDebug, "cell stopped", {{"qube", name_}, {"phases_ms", clock.text()}});
  return Ok();
}

}  // namespace tessera::cell
