// Every isolation promise of the cell backend, each tested by trying the
// forbidden thing from inside a real cell and asserting that it fails.

#include <fcntl.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cell/cgroups.h"
#include "common/fs.h"
#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(CellTest, RunsCommandsAsQubeRootWithExitStatus) {
  Cell cell = MustStart(Spec("basic"));
  RunResult r = Sh(cell, "id -u; id -g; echo err >&2; exit 7");
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.out, "0\n0\n");
  EXPECT_EQ(r.err, "err\n");
  // Killed by a signal: 128 + signal, like a shell.
  EXPECT_EQ(Sh(cell, "kill -9 $$").code, 128 + SIGKILL);
  // A missing program is an error naming it, not a silent exit code.
  backend::ExecRequest missing_req;
  missing_req.argv = {"/no/such/program"};
  auto missing = backend::Exec(cell, missing_req, backend::StreamMode::kPassFds,
                               CellBackend::kCapabilities);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, HostnameIsQubeNameAndUtsIsPrivate) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  Cell cell = MustStart(Spec("named"));
  EXPECT_EQ(Sh(cell, "hostname").out, "named\n");
  // Changing it inside does not change the host's.
  EXPECT_EQ(Sh(cell, "hostname evil && hostname").out, "evil\n");
  char after[256] = {};
  ::gethostname(after, sizeof(after) - 1);
  EXPECT_STREQ(host, after);
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SeesOnlyItsOwnProcesses) {
  Cell a = MustStart(Spec("qa"));
  Cell b = MustStart(Spec("qb"));
  // A long-running marker process in b (orphaned to b's agent).
  ASSERT_EQ(Sh(b, "sleep 1000 >/dev/null 2>&1 & echo started").code, 0);
  RunResult ps = Sh(a, "ps -o pid,args");
  EXPECT_EQ(ps.code, 0);
  EXPECT_THAT(ps.out, Not(HasSubstr("sleep 1000")));
  EXPECT_THAT(ps.out, HasSubstr("tessera-agent"));
  // Only the agent, its connection handler, sh and ps.
  RunResult pids = Sh(a, "ls /proc | grep -c '^[0-9][0-9]*$'");
  EXPECT_LE(std::stoi(pids.out), 5) << pids.out;
  // The host's test process (our pid) is not reachable by its host pid.
  RunResult host = Sh(a, "cat /proc/" + std::to_string(::getpid()) + "/cmdline");
  EXPECT_THAT(host.out, Not(HasSubstr("integration_cell_test")));
  ASSERT_TRUE(a.Stop());
  ASSERT_TRUE(b.Stop());
}

TEST_F(CellTest, CannotSeeAnotherQubesFiles) {
  Cell a = MustStart(Spec("fa"));
  Cell b = MustStart(Spec("fb"));
  ASSERT_EQ(Sh(b, "echo b > /rw/b-private && echo b > /home/user/b-home && echo b > /tmp/b-tmp && "
                  "echo b > /etc/b-root && echo ok").out,
            "ok\n");
  EXPECT_EQ(Sh(a, "ls -A /rw /home/user /tmp | grep b-; cat /etc/b-root 2>/dev/null; echo end").out,
            "end\n");
  EXPECT_NE(Sh(a, "find / -xdev -name 'b-*' 2>/dev/null | grep -q b- && echo found || echo none").out,
            "found\n");
  ASSERT_TRUE(a.Stop());
  ASSERT_TRUE(b.Stop());
}

TEST_F(CellTest, CpuWeightAndQuotaAreWritten) {
  CellSpec spec = Spec("cpuq");
  spec.cpus = 1;
  spec.cpu_weight = 200;
  Cell cell = MustStart(spec);
  char real[PATH_MAX];
  ASSERT_NE(::realpath(layout_.runtime_dir.c_str(), real), nullptr);
  auto cg = CellCgroups::ForQube(real, "cpuq");
  ASSERT_TRUE(cg);
  if (cg->version() == CgroupVersion::kV2) {
    EXPECT_EQ(*ReadFile(cg->dirs()[0] + "/cpu.weight"), "200\n");
    EXPECT_EQ(*ReadFile(cg->dirs()[0] + "/cpu.max"), "100000 100000\n");
  } else {
    std::string cpu_dir = cg->dirs()[2];
    EXPECT_EQ(*ReadFile(cpu_dir + "/cpu.shares"), "2048\n");
    EXPECT_EQ(*ReadFile(cpu_dir + "/cpu.cfs_quota_us"), "100000\n");
  }
  // The cell's own processes are in it.
  auto pids = cg->Pids();
  ASSERT_TRUE(pids);
  EXPECT_FALSE(pids->empty());
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, CannotSeeHostFilesOrMounts) {
  std::string marker = tmp_ + "/host-secret";
  ASSERT_TRUE(WriteFileAtomic(marker, "secret\n", 0644));
  Cell cell = MustStart(Spec("nohost"));
  EXPECT_NE(Sh(cell, "cat " + marker).code, 0);
  EXPECT_NE(Sh(cell, "test -e /work").code, 0) << "host's /work visible";
  // `..` never leaves the root, even from inside a bind-mounted volume.
  RunResult up = Sh(cell, "cd /home/../../../.. && pwd && ls");
  EXPECT_EQ(up.code, 0);
  EXPECT_THAT(up.out, HasSubstr("/\n"));
  EXPECT_THAT(up.out, Not(HasSubstr("work")));
  // Every mount point is one the cell is meant to have.
  RunResult mi = Sh(cell, "cat /proc/self/mountinfo");
  ASSERT_EQ(mi.code, 0);
  std::istringstream lines(mi.out);
  std::string line;
  // /usr/local: the app qube's, from its private volume (docs/STORAGE.md).
  const std::set<std::string> allowed_top = {"",    "proc", "dev", "home",  "rw",
                                             "tmp", "run",  "sys", "probe", "usr"};
  int count = 0;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, point;
    f >> id >> parent >> devno >> root >> point;
    std::string top = point.substr(1, point.find('/', 1) == std::string::npos ? std::string::npos
                                                                              : point.find('/', 1) - 1);
    EXPECT_TRUE(allowed_top.count(top)) << "unexpected mount point " << point;
    if (top == "usr") {
      EXPECT_EQ(point, "/usr/local") << "only /usr/local is mounted under /usr";
    }
    ++count;
  }
  EXPECT_GT(count, 5);
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, TemplateIsSharedReadOnlyAndAppearsRootOwned) {
  std::string host_passwd = layout_.TemplateRoot("base") + "/etc/passwd";
  struct stat before;
  ASSERT_EQ(::stat(host_passwd.c_str(), &before), 0);
  ASSERT_EQ(before.st_uid, 0u);
  std::string original = *ReadFile(host_passwd);
  {
    Cell cell = MustStart(Spec("app1"));
    // Host-root files appear owned by the qube's root without chown or copy.
    EXPECT_EQ(Sh(cell, "stat -c %u:%g /etc/passwd /bin/busybox").out, "0:0\n0:0\n");
    // Writes land in the throwaway overlay, never in the template.
    EXPECT_EQ(Sh(cell, "echo evil:x:0:0::/:/bin/sh >> /etc/passwd && tail -1 /etc/passwd").out,
              "evil:x:0:0::/:/bin/sh\n");
    // A new file made by the qube's root is root-owned inside ...
    EXPECT_EQ(Sh(cell, "touch /rw/mine && stat -c %u /rw/mine").out, "0\n");
    ASSERT_TRUE(cell.Stop());
  }
  EXPECT_EQ(*ReadFile(host_passwd), original);
  struct stat after;
  ASSERT_EQ(::stat(host_passwd.c_str(), &after), 0);
  EXPECT_EQ(after.st_uid, 0u);
  // ... and owned by the qube's unprivileged host range outside.
  storage::IdRange ids = *storage::AllocateIdRange(layout_, "app1");
  struct stat mine {};
  int stat_rc = -1;
  // The volume image is unmounted once the qube stops: mounted for the look.
  Status looked = storage::WithPrivateVolume(layout_, "app1", [&]() -> Status {
    stat_rc = ::stat((layout_.PrivateVolume("app1") + "/rw/mine").c_str(), &mine);
    return Ok();
  });
  // Seen failing once under ASan in CI, without a word: say why.
  ASSERT_TRUE(looked) << looked.error().ToString();
  ASSERT_EQ(stat_rc, 0);
  EXPECT_EQ(mine.st_uid, ids.base);
  EXPECT_GE(ids.base, storage::kFirstHostId);
  // The next start sees the pristine template again.
  Cell again = MustStart(Spec("app1"));
  EXPECT_EQ(Sh(again, "grep -c evil /etc/passwd").out, "0\n");
  EXPECT_EQ(Sh(again, "test -e /rw/mine && echo kept").out, "kept\n");
  ASSERT_TRUE(again.Stop());
}

TEST_F(CellTest, ReadOnlyHostBindCannotBeWritten) {
  std::string dir = tmp_ + "/rodata";
  ASSERT_TRUE(MakeDirs(dir));
  ASSERT_TRUE(WriteFileAtomic(dir + "/file", "data\n", 0644));
  CellSpec spec = Spec("robind");
  spec.extra_ro_binds.push_back({dir, "/ro"});
  Cell cell = MustStart(spec);
  EXPECT_EQ(Sh(cell, "cat /ro/file").out, "data\n");
  RunResult w = Sh(cell, "echo x > /ro/file");
  EXPECT_NE(w.code, 0);
  EXPECT_THAT(w.err, HasSubstr("Read-only"));
  // Even after remounting its own view read-write, host-root files are not
  // the qube root's (their owner is unmapped in the cell's user namespace).
  Sh(cell, "mount -o remount,rw,bind /ro");
  EXPECT_NE(Sh(cell, "echo x > /ro/file").code, 0);
  EXPECT_EQ(*ReadFile(dir + "/file"), "data\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SymlinkedPrivateVolumeIsRefused) {
  // A private volume whose "home" points at a host path must not be bound.
  ASSERT_TRUE(storage::EnsurePrivateVolume(layout_, "evil"));
  std::string home = layout_.PrivateVolume("evil") + "/home";
  ASSERT_TRUE(storage::RemoveTree(home));
  ASSERT_EQ(::symlink("/etc", home.c_str()), 0);
  auto cell = Start(Spec("evil"));
  ASSERT_FALSE(cell) << "started with /home -> /etc";
  EXPECT_THAT(cell.error().ToString(), HasSubstr("home"));
}

TEST_F(CellTest, SymlinkedMountPointInPersistentRootIsRefused) {
  // A template qube controls its own root: a planted "rw -> /etc" (or a
  // relative "../../..") must not redirect where the private volume goes.
  for (const char* target : {"/etc", "../../../../../../../../etc"}) {
    storage::TemplateBuildOptions options;
    options.source = storage::TemplateSource::kBusybox;
    options.replace = true;
    ASSERT_TRUE(storage::BuildTemplate(layout_, "tpl", options));
    std::string rw = layout_.TemplateRoot("tpl") + "/rw";
    (void)::rmdir(rw.c_str());
    ASSERT_EQ(::symlink(target, rw.c_str()), 0);
    CellSpec spec = Spec("tpl");
    spec.root = RootKind::kTemplate;
    spec.template_name = "tpl";
    auto cell = Start(spec);
    ASSERT_FALSE(cell) << "started with /rw -> " << target;
    EXPECT_THAT(cell.error().ToString(), HasSubstr("bind mount")) << cell.error().ToString();
  }
}

TEST_F(CellTest, MountOfHostFilesystemsIsRefused) {
  Cell cell = MustStart(Spec("mounter"));
  // Block-device filesystems are not mountable from a user namespace.
  EXPECT_EQ(Run(cell, {"/probe", "mount", "ext4", "/dev/null", "/mnt"}).out, "errno=1\n");
  // sysfs needs a visible host sysfs: there is none in a cell.
  EXPECT_NE(Sh(cell, "mount -t sysfs sysfs /mnt").code, 0);
  // A second procfs is the cell's own (the /proc masks are not locked; see
  // docs/CELL.md): it still shows only the cell's processes.
  RunResult proc = Sh(cell, "mount -t proc proc /mnt && ls /mnt | grep -c '^[0-9][0-9]*$'; umount /mnt");
  if (proc.code == 0) {
    EXPECT_LE(std::stoi(proc.out), 5) << proc.out;
  }
  // Own-namespace tmpfs is allowed (and invisible to the host).
  EXPECT_EQ(Sh(cell, "mount -t tmpfs t /mnt && echo ok").out, "ok\n");
  ASSERT_TRUE(cell.Stop());
}

// One forbidden syscall per row: it must fail with EPERM (seccomp), or ENOSYS.
struct Forbidden {
  std::vector<std::string> args;
  const char* expect;
};

TEST_F(CellTest, SeccompDeniesDangerousSyscalls) {
  Cell cell = MustStart(Spec("seccomp"));
  const Forbidden rows[] = {
      {{"init_module"}, "errno=1\n"},
      {{"finit_module"}, "errno=1\n"},
      {{"delete_module"}, "errno=1\n"},
      {{"kexec_load"}, "errno=1\n"},
      {{"bpf"}, "errno=1\n"},
      {{"perf_event_open"}, "errno=1\n"},
      {{"userfaultfd"}, "errno=1\n"},
      {{"keyctl"}, "errno=1\n"},
      {{"add_key"}, "errno=1\n"},
      {{"open_by_handle_at"}, "errno=1\n"},
      {{"reboot"}, "errno=1\n"},
      {{"settimeofday"}, "errno=1\n"},
      {{"clock_settime"}, "errno=1\n"},
      {{"swapon"}, "errno=1\n"},
      {{"swapoff"}, "errno=1\n"},
      {{"request_key"}, "errno=1\n"},
      {{"kexec_file_load"}, "errno=1\n"},
      {{"adjtimex"}, "errno=1\n"},
      {{"acct"}, "errno=1\n"},
      {{"syslog"}, "errno=1\n"},
      {{"iopl"}, "errno=1\n"},
      {{"fanotify_init"}, "errno=1\n"},
      {{"io_uring_setup"}, "errno=1\n"},
      {{"personality", "0x0040000"}, "errno=1\n"},   // ADDR_NO_RANDOMIZE
      {{"personality", "0x0400000"}, "errno=1\n"},   // READ_IMPLIES_EXEC
      {{"personality", "0x80000000"}, "errno=1\n"},
      {{"unshare-user"}, "errno=1\n"},
      {{"clone-user"}, "errno=1\n"},
  };
  for (const auto& row : rows) {
    std::vector<std::string> argv = {"/probe"};
    argv.insert(argv.end(), row.args.begin(), row.args.end());
    RunResult r = Run(cell, argv);
    EXPECT_EQ(r.out, row.expect) << "probe " << row.args[0] << ": " << r.err;
    EXPECT_EQ(r.code, 1) << row.args[0];
  }
  // A foreign-ABI syscall (i386 int 0x80) kills the process (SIGSYS).
  ExpectInt80Killed(cell);
  // Harmless neighbours still work: the filter is not deny-everything.
  EXPECT_EQ(Run(cell, {"/probe", "personality", "0xffffffff"}).out, "ok\n");
  EXPECT_EQ(Run(cell, {"/probe", "personality", "8"}).out, "ok\n");  // PER_LINUX32
  EXPECT_EQ(Run(cell, {"/probe", "unshare-net"}).out, "ok\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, NestedUserNamespacesOnlyWithFeature) {
  CellSpec spec = Spec("nested");
  spec.nested_userns = true;
  Cell cell = MustStart(spec);
  EXPECT_EQ(Run(cell, {"/probe", "unshare-user"}).out, "ok\n");
  EXPECT_EQ(Run(cell, {"/probe", "bpf"}).out, "errno=1\n");  // the rest stays denied
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, CapabilitiesNoNewPrivsAndSeccompAreSet) {
  Cell cell = MustStart(Spec("caps"));
  RunResult r = Sh(cell, "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status");
  ASSERT_EQ(r.code, 0);
  std::istringstream in(r.out);
  std::string key, value;
  std::map<std::string, std::string> status;
  while (in >> key >> value) status[key] = value;
  EXPECT_EQ(status["NoNewPrivs:"], "1");
  EXPECT_EQ(status["Seccomp:"], "2");
  uint64_t bnd = std::stoull(status["CapBnd:"], nullptr, 16);
  for (int cap : {16 /*SYS_MODULE*/, 17 /*SYS_RAWIO*/, 22 /*SYS_BOOT*/, 25 /*SYS_TIME*/,
                  33 /*MAC_ADMIN*/, 34 /*SYSLOG*/, 39 /*BPF*/, 38 /*PERFMON*/}) {
    EXPECT_EQ(bnd & (uint64_t{1} << cap), 0u) << "capability " << cap << " still in bounding set";
  }
  EXPECT_NE(bnd & (uint64_t{1} << 21), 0u) << "CAP_SYS_ADMIN (own namespaces) was dropped";
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, CannotPtraceHostProcesses) {
  Cell cell = MustStart(Spec("tracer"));
  pid_t victim = ::fork();
  ASSERT_GE(victim, 0);
  if (victim == 0) {
    ::pause();
    _exit(0);
  }
  RunResult r = Run(cell, {"/probe", "ptrace", std::to_string(victim)});
  ::kill(victim, SIGKILL);
  ::waitpid(victim, nullptr, 0);
  // The host pid does not exist in the cell's pid namespace (or is another,
  // cell-local process, which is fine); the host victim is never traced.
  EXPECT_NE(r.out, "ok\n") << "traced host pid " << victim;
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, NetworkIsLoopbackOnly) {
  Cell cell = MustStart(Spec("offline"));
  RunResult r = Sh(cell, "cat /proc/net/dev | grep : | cut -d: -f1 | tr -d ' '");
  EXPECT_EQ(r.out, "lo\n");
  EXPECT_EQ(Sh(cell, "ip -o link show lo | grep -c UP").out, "1\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, MemoryLimitKillsOnlyTheCellsProcess) {
  CellSpec spec = Spec("hungry");
  spec.memory_mib = 64;
  Cell cell = MustStart(spec);
  RunResult r = Run(cell, {"/probe", "alloc", "256"});
  EXPECT_EQ(r.code, 128 + SIGKILL) << r.out << r.err;
  auto cg = CellCgroups::ForQube(layout_.runtime_dir + "", "hungry");
  ASSERT_TRUE(cg);
  // The runtime dir the cell used is the canonical one.
  char real[PATH_MAX];
  ASSERT_NE(::realpath(layout_.runtime_dir.c_str(), real), nullptr);
  cg = CellCgroups::ForQube(real, "hungry");
  auto ooms = cg->OomKills();
  ASSERT_TRUE(ooms) << ooms.error().ToString();
  EXPECT_GE(*ooms, 1u);
  // The cell (its agent) survived and still runs commands; the host too.
  EXPECT_TRUE(cell.Running());
  EXPECT_EQ(Sh(cell, "echo alive").out, "alive\n");
  // The agent is the OOM killer's last resort (where the host may lower
  // scores: CAP_SYS_RESOURCE); commands are ordinary.
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_RESOURCE) == 1) {
    EXPECT_EQ(Sh(cell, "cat /proc/1/oom_score_adj").out, "-941\n");
  } else {
    std::printf("note: no CAP_SYS_RESOURCE on this host: agent oom_score_adj not checked\n");
  }
  EXPECT_EQ(Sh(cell, "cat /proc/self/oom_score_adj").out, "0\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, ForkBombIsContained) {
  CellSpec spec = Spec("bomb");
  spec.pids_max = 64;
  Cell cell = MustStart(spec);
  RunResult r = Run(cell, {"/probe", "forkbomb", "100000"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("errno=11")) << r.out;  // EAGAIN from pids.max
  long forked = std::stol(r.out.substr(r.out.find('=') + 1));
  EXPECT_LT(forked, 64);
  // The host is responsive: it can still fork and exec.
  pid_t p = ::fork();
  ASSERT_GE(p, 0);
  if (p == 0) {
    ::execl("/bin/true", "true", nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(p, &status, 0), p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(Sh(cell, "echo alive").out, "alive\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, HostTemplateShowsHostUsrUnmappedAndLockedReadOnly) {
  storage::TemplateBuildOptions options;
  options.source = storage::TemplateSource::kHost;
  auto built = storage::BuildTemplate(layout_, "hostt", options);
  ASSERT_TRUE(built) << built.error().ToString();
  CellSpec spec = Spec("hostapp");
  spec.template_name = "hostt";
  Cell cell = MustStart(spec);
  // The host's programs run; their files keep their host owners, which the
  // cell does not map (overflow id): the qube has no more access to them than
  // an unprivileged host user (hardening_test.cc checks private files).
  std::string overflow = *ReadFile("/proc/sys/kernel/overflowuid");
  overflow.pop_back();
  EXPECT_EQ(Sh(cell, "stat -c %u:%g /usr/bin/env && /usr/bin/env true && echo ran").out,
            overflow + ":" + overflow + "\nran\n");
  // Read-only, and the qube's root cannot make it writable.
  EXPECT_THAT(Sh(cell, "touch /usr/tessera-x 2>&1; echo rc=$?").out, HasSubstr("rc=1"));
  EXPECT_THAT(Sh(cell, "mount -o remount,rw,bind /usr 2>&1; echo rc=$?").out, Not(HasSubstr("rc=0")));
  EXPECT_FALSE(std::filesystem::exists("/usr/tessera-x"));
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, InheritedMountsAreLockedButOwnMountsWork) {
  Cell cell = MustStart(Spec("locked"));
  // A read-only host bind cannot be remounted read-write...
  RunResult remount = Sh(cell, "mount -o remount,rw,bind /probe 2>&1; echo rc=$?");
  EXPECT_THAT(remount.out, ::testing::Not(HasSubstr("rc=0"))) << remount.out;
  EXPECT_THAT(Sh(cell, "grep ' /probe ' /proc/self/mountinfo").out, HasSubstr(" ro,"));
  // ... nor can a mask over /proc be taken away (it would reveal /proc/sys rw)
  // or the nosuid/nodev flags of the private volume be cleared.
  EXPECT_THAT(Sh(cell, "umount /proc/sys 2>&1; umount -l /proc/sys 2>&1; echo rc=$?").out,
              ::testing::Not(HasSubstr("rc=0")));
  EXPECT_THAT(Sh(cell, "grep ' /proc/sys ' /proc/self/mountinfo").out, HasSubstr(" ro,"));
  EXPECT_THAT(Sh(cell, "mount -o remount,bind,suid,dev /rw 2>&1; echo rc=$?").out,
              ::testing::Not(HasSubstr("rc=0")));
  // The qube's root still mounts new filesystems in its own namespace.
  EXPECT_EQ(Sh(cell, "mount -t tmpfs none /mnt && touch /mnt/x && umount /mnt && echo ok").out, "ok\n");
  // And owns its uts and net namespaces.
  EXPECT_EQ(Sh(cell, "hostname renamed && hostname && ip link set lo down && ip link set lo up && echo ok").out,
            "renamed\nok\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, DevHasOnlyAllowedNodesAndProcIsMasked) {
  Cell cell = MustStart(Spec("devs"));
  EXPECT_EQ(Sh(cell, "ls /dev | tr '\\n' ' '").out,
            "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ");
  EXPECT_EQ(Sh(cell, "head -c 4 /dev/zero | wc -c").out, "4\n");
  EXPECT_NE(Sh(cell, "echo 1 > /proc/sys/kernel/ns_last_pid").code, 0);
  EXPECT_NE(Sh(cell, "echo x > /sys/x").code, 0);
  EXPECT_EQ(Sh(cell, "ls /sys | wc -l").out, "0\n");
  // Masked files read as empty.
  EXPECT_EQ(Sh(cell, "test -e /proc/timer_list && wc -c < /proc/timer_list || echo 0").out, "0\n");
  ASSERT_TRUE(cell.Stop());
}

}  // namespace
}  // namespace tessera::cell::testing
