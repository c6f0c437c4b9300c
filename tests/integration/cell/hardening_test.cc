// Hardening against a qube that attacks the host's shared resources or its
// own cell's protections (issue 9's attack run): each test tries the attack
// from inside a real cell and asserts it fails.

#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cell/cgroups.h"
#include "common/fs.h"
#include "common/scope_guard.h"
#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(CellTest, CommandsCannotLowerTheirOomScoreBelowZero) {
  Cell cell = MustStart(Spec("oomadj"));
  // The agent's minimum stays 0 (it was shielded through the legacy oom_adj),
  // so a command that inherits it cannot go back to the agent's score.
  EXPECT_EQ(Sh(cell, "cat /proc/self/oom_score_adj").out, "0\n");
  RunResult lower = Sh(cell, "echo -941 > /proc/self/oom_score_adj; echo rc=$?");
  EXPECT_THAT(lower.out, HasSubstr("rc=1")) << lower.err;
  EXPECT_THAT(lower.err, HasSubstr("Permission denied"));
  EXPECT_THAT(Sh(cell, "echo -1 > /proc/self/oom_score_adj; echo rc=$?").out, HasSubstr("rc=1"));
  EXPECT_THAT(Sh(cell, "echo -5 > /proc/self/oom_adj; echo rc=$?").out, HasSubstr("rc=1"));
  EXPECT_EQ(Sh(cell, "cat /proc/self/oom_score_adj").out, "0\n");
  // Raising stays free.
  EXPECT_EQ(Sh(cell, "echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj").out,
            "500\n");
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_RESOURCE) == 1) {
    EXPECT_LT(std::stoi(Sh(cell, "cat /proc/1/oom_score_adj").out), 0);
  } else {
    std::printf("note: no CAP_SYS_RESOURCE on this host: agent oom_score_adj not checked\n");
  }
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, RlimitsAreSetForEveryCommand) {
  CellSpec spec = Spec("limits");
  spec.rlimit_nofile = {256, 512};
  spec.rlimit_nproc = Rlimit{100, 120};
  spec.rlimit_core = {0, 0};
  Cell cell = MustStart(spec);
  EXPECT_EQ(Sh(cell, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c; ulimit -Hc").out,
            "256\n512\n100\n120\n0\n0\n");
  // Up to the hard limit is the qube's choice; beyond it is refused.
  EXPECT_EQ(Sh(cell, "ulimit -n 512 && ulimit -n").out, "512\n");
  EXPECT_THAT(Sh(cell, "ulimit -n 513 2>&1; echo rc=$?").out, Not(HasSubstr("rc=0")));
  EXPECT_THAT(Sh(cell, "ulimit -Hn 100000 2>&1; echo rc=$?").out, Not(HasSubstr("rc=0")));
  EXPECT_THAT(Sh(cell, "ulimit -c unlimited 2>&1; echo rc=$?").out, Not(HasSubstr("rc=0")));
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, RlimitDefaultsFollowThePidsLimit) {
  CellSpec spec = Spec("limits2");
  spec.pids_max = 77;
  Cell cell = MustStart(spec);
  RunResult r = Sh(cell, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c");
  std::istringstream in(r.out);
  std::string soft, hard, nproc, nproc_hard, core;
  in >> soft >> hard >> nproc >> nproc_hard >> core;
  EXPECT_EQ(soft, "1024");
  // 524288, or the starter's own hard limit where it may not raise it.
  EXPECT_LE(std::stoull(hard), 524288u) << r.out;
  EXPECT_GE(std::stoull(hard), 1024u) << r.out;
  EXPECT_EQ(nproc, "77");
  EXPECT_EQ(nproc_hard, "77");
  EXPECT_EQ(core, "0");
  ASSERT_TRUE(cell.Stop());
}

// The hardening probe bound at /hprobe (calls busybox cannot make).
CellSpec WithProbe(CellSpec spec) {
  spec.extra_ro_binds.push_back(
      {std::string(TESSERA_BINARY_DIR) + "/tessera-hardening-probe", "/hprobe"});
  return spec;
}

TEST_F(CellTest, PtyMaxBoundsTheCellsShareOfThePtyPool) {
  CellSpec greedy_spec = WithProbe(Spec("ptygreedy"));
  greedy_spec.pty_max = 8;
  Cell greedy = MustStart(greedy_spec);
  Cell other = MustStart(WithProbe(Spec("ptyother")));
  EXPECT_THAT(Sh(greedy, "grep ' /dev/pts ' /proc/self/mountinfo").out, HasSubstr("max=8"));
  // The greedy qube holds every pty it may have; the next one fails with
  // ENOSPC (28) ...
  RunResult hold = Sh(greedy,
                      "setsid /hprobe ptys 1000 hold > /tmp/ptys 2>&1 & "
                      "for i in $(seq 100); do test -s /tmp/ptys && break; sleep 0.05; done; "
                      "cat /tmp/ptys");
  EXPECT_EQ(hold.out, "opened=8 errno=28\n") << hold.err;
  EXPECT_EQ(Run(greedy, {"/hprobe", "ptys", "1"}).out, "opened=0 errno=28\n");
  // ... while another qube still opens its own.
  EXPECT_EQ(Run(other, {"/hprobe", "ptys", "4"}).out, "opened=4 errno=0\n");
  ASSERT_TRUE(greedy.Stop());
  ASSERT_TRUE(other.Stop());
}

// The cell's cgroups, found as the tests of isolation_test.cc do.
CellCgroups CgroupsOf(const storage::Layout& layout, const std::string& name) {
  char real[PATH_MAX];
  EXPECT_NE(::realpath(layout.runtime_dir.c_str(), real), nullptr);
  auto cg = CellCgroups::ForQube(real, name);
  EXPECT_TRUE(cg) << cg.error().ToString();
  return *cg;
}

TEST_F(CellTest, IoWeightAndIoMaxLandInTheCgroup) {
  CellSpec spec = Spec("iolimits");
  spec.io_weight = 300;
  spec.io_max = {.read_bps = 0, .write_bps = 1 << 20, .read_iops = 200, .write_iops = 0};
  Cell cell = MustStart(spec);
  auto disk = WholeDiskOf(layout_.state_dir);
  if (!disk) GTEST_SKIP() << "state dir on no block device: " << disk.error().ToString();
  CellCgroups cg = CgroupsOf(layout_, "iolimits");
  if (cg.version() == CgroupVersion::kV2) {
    const std::string& d = cg.dirs()[0];
    if (std::filesystem::exists(d + "/io.max")) {
      EXPECT_EQ(*ReadFile(d + "/io.max"), *disk + " rbps=max wbps=1048576 riops=200 wiops=max\n");
    } else {
      std::printf("note: no io controller in %s\n", d.c_str());
    }
    if (std::filesystem::exists(d + "/io.weight")) {
      EXPECT_THAT(*ReadFile(d + "/io.weight"), HasSubstr("default 300"));
    }
  } else {
    std::string blkio;
    for (const auto& d : cg.dirs()) {
      if (d.find("/blkio/") != std::string::npos) blkio = d;
    }
    if (blkio.empty()) GTEST_SKIP() << "no v1 blkio hierarchy";
    EXPECT_EQ(*ReadFile(blkio + "/blkio.throttle.write_bps_device"), *disk + " 1048576\n");
    EXPECT_EQ(*ReadFile(blkio + "/blkio.throttle.read_iops_device"), *disk + " 200\n");
    EXPECT_EQ(*ReadFile(blkio + "/blkio.throttle.read_bps_device"), "");
    if (std::filesystem::exists(blkio + "/blkio.bfq.weight")) {
      EXPECT_EQ(*ReadFile(blkio + "/blkio.bfq.weight"), "300\n");
    } else if (std::filesystem::exists(blkio + "/blkio.weight")) {
      EXPECT_EQ(*ReadFile(blkio + "/blkio.weight"), "1000\n");  // 300 * 5, at most 1000
    } else {
      std::printf("note: no blkio weight file (no BFQ/CFQ scheduler): io_weight not checked\n");
    }
    // The cell's processes are in it.
    EXPECT_THAT(*ReadFile(blkio + "/cgroup.procs"), HasSubstr(std::to_string(cell.init_pid())));
  }
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, WriteBpsThrottlesADiskWriter) {
  if (!WholeDiskOf(layout_.state_dir)) GTEST_SKIP() << "state dir on no block device";
  Cell free_cell = MustStart(Spec("iofree"));
  CellSpec spec = Spec("ioslow");
  spec.io_max.write_bps = 512 * 1024;
  Cell slow = MustStart(spec);
  // Seconds a direct-I/O write of 2 MiB to the private volume takes (direct:
  // v1 blkio does not throttle page-cache writeback).
  auto timed_write = [&](Cell& cell) {
    auto start = std::chrono::steady_clock::now();
    RunResult r = Sh(cell, "dd if=/dev/zero of=/rw/io-test bs=64k count=32 oflag=direct 2>&1 && "
                           "rm /rw/io-test");
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double unthrottled = timed_write(free_cell);
  double throttled = timed_write(slow);
  std::printf("direct write of 2 MiB: unthrottled %.2f s, write_bps=512KiB/s %.2f s\n",
              unthrottled, throttled);
  // 2 MiB at 512 KiB/s is ~4 s; far more than the disk alone needs. Loose
  // bounds only: the kernel lets a first slice through at full speed.
  EXPECT_GT(throttled, 2.0);
  EXPECT_GT(throttled, 4 * unthrottled);
  ASSERT_TRUE(free_cell.Stop());
  ASSERT_TRUE(slow.Stop());
}

TEST_F(CellTest, HostBindsOfATemplateGrantOnlyWhatOthersMayRead) {
  // A host tree like /usr/local with a root-only corner, and a template that
  // binds it (as `--from host` binds /usr), without touching the host's /usr.
  // Not under /tmp: a template's binds keep their host path, and the cell's
  // own /tmp tmpfs would cover it.
  char dir[] = "/var/tmp/tessera-hostbind-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string src = dir;
  auto remove_src = ScopeGuard([&] {
    std::error_code ec;
    std::filesystem::remove_all(src, ec);
  });
  ASSERT_TRUE(MakeDirs(src + "/private", 0700));
  ASSERT_EQ(::chmod((src + "/private").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFileAtomic(src + "/private/secret", "secret\n", 0600));
  ASSERT_TRUE(WriteFileAtomic(src + "/public.txt", "public\n", 0644));
  ASSERT_EQ(::chmod(src.c_str(), 0755), 0);
  storage::TemplateBuildOptions options;
  options.source = storage::TemplateSource::kBusybox;
  ASSERT_TRUE(storage::BuildTemplate(layout_, "withhost", options));
  std::string info_path = layout_.TemplateDir("withhost") + "/template.json";
  nlohmann::json info = nlohmann::json::parse(*ReadFile(info_path));
  info["host_ro_binds"] = {src};
  ASSERT_TRUE(WriteFileAtomic(info_path, info.dump(), 0644));
  ASSERT_EQ(storage::ReadTemplateInfo(layout_, "withhost")->host_ro_binds,
            std::vector<std::string>{src});

  CellSpec spec = Spec("hostbinds");
  spec.template_name = "withhost";
  Cell cell = MustStart(spec);
  std::string overflow = *ReadFile("/proc/sys/kernel/overflowuid");
  overflow.pop_back();
  EXPECT_EQ(Sh(cell, "cat " + src + "/public.txt").out, "public\n");
  // The qube's root holds CAP_DAC_OVERRIDE in its namespace, which does not
  // reach files whose owner it does not map: the "other" bits decide.
  RunResult secret = Sh(cell, "cat " + src + "/private/secret");
  EXPECT_NE(secret.code, 0);
  EXPECT_THAT(secret.err, HasSubstr("Permission denied"));
  EXPECT_EQ(secret.out, "");
  RunResult list = Sh(cell, "ls " + src + "/private");
  EXPECT_NE(list.code, 0);
  EXPECT_THAT(list.err, HasSubstr("Permission denied"));
  EXPECT_EQ(Sh(cell, "stat -c %u:%g " + src + "/public.txt " + src + "/private").out,
            overflow + ":" + overflow + "\n" + overflow + ":" + overflow + "\n");
  // Nor can it take ownership or change modes (read-only, and not its files).
  EXPECT_NE(Sh(cell, "chmod 0777 " + src + "/private").code, 0);
  EXPECT_NE(Sh(cell, "chown 0:0 " + src + "/private").code, 0);
  ASSERT_TRUE(cell.Stop());
}

// ---- seccomp: allow-list, reported violations ---------------------------------

// One forbidden call: how to make it, and what the cell must see.
struct ForbiddenCall {
  std::vector<std::string> argv;
  const char* syscall;  // the name the monitor reports
  int err;              // the errno inside the cell, and the one answered
};

// Dangerous (EPERM), kernel AIO and unlisted calls (ENOSYS), and the
// argument-conditional ones.
std::vector<ForbiddenCall> ForbiddenCalls() {
  std::vector<ForbiddenCall> calls;
  for (const char* name :
       {"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf",
        "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "open_by_handle_at",
        "reboot", "clock_settime", "adjtimex", "swapon", "swapoff", "acct", "syslog", "iopl",
        "fanotify_init", "io_uring_setup"}) {
    calls.push_back({{"/probe", name}, name, EPERM});
  }
  // glibc implements settimeofday with the clock_settime system call.
  calls.push_back({{"/probe", "settimeofday"}, "clock_settime", EPERM});
  calls.push_back({{"/probe", "personality", "0x0040000"}, "personality", EPERM});
  calls.push_back({{"/probe", "personality", "0x80000000"}, "personality", EPERM});
  calls.push_back({{"/probe", "unshare-user"}, "unshare", EPERM});
  calls.push_back({{"/probe", "clone-user"}, "clone", EPERM});
  calls.push_back({{"/hprobe", "vsock"}, "socket", EPERM});
  for (const char* name :
       {"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents"}) {
    calls.push_back({{"/hprobe", name}, name, ENOSYS});
  }
  // Not on the allow-list: sysfs(2), vhangup, modify_ldt.
  calls.push_back({{"/hprobe", "nr", std::to_string(SYS_sysfs), "3"}, "sysfs", ENOSYS});
  calls.push_back({{"/hprobe", "nr", std::to_string(SYS_vhangup)}, "vhangup", ENOSYS});
  calls.push_back({{"/hprobe", "nr", std::to_string(SYS_modify_ldt), "0", "0", "0"}, "modify_ldt",
                   ENOSYS});
  return calls;
}

std::string ErrnoLine(int err) { return "errno=" + std::to_string(err) + "\n"; }

TEST_F(CellTest, SeccompErrnoModeDeniesWithTheTablesErrno) {
  Cell cell = MustStart(WithProbe(Spec("scerrno")));
  for (const ForbiddenCall& call : ForbiddenCalls()) {
    RunResult r = Run(cell, call.argv);
    EXPECT_EQ(r.out, ErrnoLine(call.err)) << call.argv[1] << ": " << r.err;
  }
  // Foreign ABIs still kill: i386 int 0x80, and x32 (the x32 bit on a
  // native number).
  ExpectInt80Killed(cell);
  EXPECT_EQ(Run(cell, {"/hprobe", "nr", std::to_string(0x40000000 | SYS_getpid)}).code,
            128 + SIGSYS);
  EXPECT_EQ(Run(cell, {"/hprobe", "nr", std::to_string(SYS_clone3), "0", "0"}).out,
            ErrnoLine(ENOSYS));
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SeccompNotifyReportsEachForbiddenCallOnce) {
  Cell cell = MustStartMonitored(WithProbe(Spec("scnotify")));
  // Starting the agent and running ordinary commands is silent.
  EXPECT_EQ(Sh(cell, "true; ls / >/dev/null; echo ok").out, "ok\n");
  EXPECT_TRUE(Violations("scnotify").empty()) << Describe(Violations("scnotify"));
  for (const ForbiddenCall& call : ForbiddenCalls()) {
    ClearViolations("scnotify");
    RunResult r = Run(cell, call.argv);
    // The call fails inside exactly as in kErrno mode ...
    EXPECT_EQ(r.out, ErrnoLine(call.err)) << call.argv[1] << ": " << r.err;
    // ... and is reported once, with its name and the errno answered.
    std::vector<SeccompViolation> seen = Violations("scnotify");
    ASSERT_EQ(seen.size(), 1u) << call.argv[1] << ": " << Describe(seen);
    EXPECT_EQ(seen[0].syscall_name, call.syscall) << call.argv[1];
    EXPECT_EQ(seen[0].errno_answered, call.err) << call.argv[1];
    EXPECT_GT(seen[0].pid, 1);
    EXPECT_FALSE(seen[0].target_gone);
  }
  // Allowed neighbours of the conditional rules are not reported.
  ClearViolations("scnotify");
  EXPECT_EQ(Run(cell, {"/probe", "personality", "0xffffffff"}).out, "ok\n");
  EXPECT_EQ(Run(cell, {"/probe", "personality", "8"}).out, "ok\n");
  EXPECT_EQ(Run(cell, {"/probe", "unshare-net"}).out, "ok\n");
  // clone3 (without nested-userns) is refused with ENOSYS so that libc falls
  // back to clone; glibc tries it for every thread: a fallback, not reported.
  EXPECT_EQ(Run(cell, {"/hprobe", "nr", std::to_string(SYS_clone3), "0", "0"}).out,
            ErrnoLine(ENOSYS));
  EXPECT_TRUE(Violations("scnotify").empty()) << Describe(Violations("scnotify"));
  // Foreign ABIs kill without a notification.
  ExpectInt80Killed(cell);
  EXPECT_TRUE(Violations("scnotify").empty()) << Describe(Violations("scnotify"));
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, SeccompNotifyFailsClosedWithoutAListener) {
  Cell cell = MustStartMonitored(WithProbe(Spec("scclosed")));
  EXPECT_EQ(Run(cell, {"/probe", "bpf"}).out, ErrnoLine(EPERM));
  // The responder goes (a daemon restart loses the listener the same way):
  // still denied, with ENOSYS, and no longer reported.
  monitored_["scclosed"].responder->Stop();
  ClearViolations("scclosed");
  EXPECT_EQ(Run(cell, {"/probe", "bpf"}).out, ErrnoLine(ENOSYS));
  EXPECT_EQ(Run(cell, {"/hprobe", "io_setup"}).out, ErrnoLine(ENOSYS));
  EXPECT_EQ(Sh(cell, "echo still-running").out, "still-running\n");
  EXPECT_TRUE(Violations("scclosed").empty());
  ASSERT_TRUE(cell.Stop());
}

// The workloads the allow-list was measured with (docs/CELL.md "Seccomp").
class SeccompWorkloadTest : public CellTest {
 protected:
  using Steps = std::vector<std::pair<std::string, std::string>>;

  // Runs each step (a shell script) in `cell`, started with
  // MustStartMonitored: every step must succeed and none may be denied
  // anything; a failure names the step and what it was denied.
  void ExpectNeverDenied(Cell& cell, const Steps& steps) {
    for (const auto& [what, script] : steps) {
      ClearViolations(cell.name());
      RunResult r = Sh(cell, script);
      EXPECT_EQ(r.code, 0) << cell.name() << " / " << what << ": " << r.out << r.err;
      std::vector<SeccompViolation> seen = Violations(cell.name());
      EXPECT_TRUE(seen.empty()) << cell.name() << " / " << what << " was denied:\n"
                                << Describe(seen) << r.out << r.err;
    }
  }
};

TEST_F(SeccompWorkloadTest, BusyboxIsNeverDenied) {
  Cell cell = MustStartMonitored(Spec("bbwork"));
  const Steps steps = {
      {"sh", "a=1; b=$((a + 1)); test $b = 2 && echo $b | read x; for i in 1 2; do :; done"},
      {"ls", "ls -la / /proc/self/ >/dev/null && ls -R /etc >/dev/null"},
      {"find", "find / -xdev -name 'pass*' >/dev/null && find /proc/self -maxdepth 1 >/dev/null"},
      {"tar",
       "mkdir -p /tmp/w && cd /tmp/w && echo hello > a.txt && tar czf x.tgz a.txt && "
       "rm a.txt && tar xzf x.tgz && tar tzf x.tgz | grep -q a.txt"},
      {"wget -h", "wget -h >/dev/null 2>&1; test $? -le 1"},
      {"sed",
       "echo hello | sed -e 's/hello/bye/' | grep -q bye && "
       "printf 'a\\nb\\n' > /tmp/s && sed -i 's/a/c/' /tmp/s && grep -q c /tmp/s"},
      {"awk", "echo '1 2 3' | awk '{ s = $1 + $2 + $3; print s }' | grep -q 6"},
      {"ps", "ps -o pid,user,args >/dev/null && ps >/dev/null"},
      {"top -n1", "top -b -n1 >/dev/null"},
      {"mount tmpfs",
       "mkdir -p /mnt/t && mount -t tmpfs -o size=1m t /mnt/t && touch /mnt/t/f && "
       "umount /mnt/t"},
      {"ip",
       "ip addr show lo >/dev/null && ip link set lo down && ip link set lo up && "
       "ip route >/dev/null"},
      {"ifconfig", "ifconfig lo >/dev/null && ifconfig lo 127.0.0.1 up"},
      {"chroot", "chroot / /bin/true"},
      {"su", "su -s /bin/sh -c 'id -u' user | grep -q 1000"},
      {"files",
       "cd /tmp && cp /etc/passwd p && mv p q && ln -s q l && chmod 600 q && "
       "chown 1000:1000 q && stat q >/dev/null && md5sum q >/dev/null && "
       "sha256sum q >/dev/null && sort q | uniq | wc -l >/dev/null && touch -d 2020-01-01 q "
       "&& du -s /etc >/dev/null && df >/dev/null && sync && rm -f q l"},
      {"processes",
       "sleep 10 & kill $!; wait; renice -n 5 $$ >/dev/null && ionice -c 3 true && "
       "taskset -p $$ >/dev/null && timeout 1 sleep 0.1 && "
       "seq 3 | xargs -n1 echo >/dev/null && (trap 'exit 0' USR1; kill -USR1 $$)"},
      {"namespaces", "unshare -n -m -u -i true && sysctl -a >/dev/null 2>&1; true"},
      {"ping", "ping -c 1 -W 1 127.0.0.1 >/dev/null"},
      // Not dmesg: reading the kernel log (syslog(2)) is denied on purpose.
      {"info",
       "date >/dev/null && uname -a >/dev/null && hostname >/dev/null && id >/dev/null && "
       "free >/dev/null && uptime >/dev/null && nproc >/dev/null"},
      {"pipes", "yes | head -1000 | gzip | gunzip | wc -l | grep -q 1000"},
      // The client retries until the listener is up (a fixed sleep races under load).
      // The listener's stdin never ends (busybox nc may exit on its stdin's
      // EOF before it reads what a client sent).
      {"nc loopback",
       "sleep 30 </dev/null 2>/dev/null | nc -l -p 7777 > /tmp/nc.out 2>/dev/null & "
       "for i in $(seq 100); do echo hi | nc 127.0.0.1 7777 >/dev/null 2>&1 && break; "
       "sleep 0.05; done; for i in $(seq 100); do grep -q hi /tmp/nc.out && break; "
       "sleep 0.05; done; kill $! 2>/dev/null; grep -q hi /tmp/nc.out"},
  };
  ExpectNeverDenied(cell, steps);
  ASSERT_TRUE(cell.Stop());
}

// Python from the host's /usr (a `--from host` template).
constexpr char kPythonThreads[] = R"(
import threading, queue
q = queue.Queue()
def work(n): q.put(sum(range(n)))
ts = [threading.Thread(target=work, args=(10000,)) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
assert q.qsize() == 8
ev = threading.Event(); threading.Timer(0.01, ev.set).start(); assert ev.wait(5)
)";
constexpr char kPythonSubprocess[] = R"(
import subprocess, os, signal
assert subprocess.run(['/usr/bin/env', 'true']).returncode == 0
out = subprocess.run(['/bin/sh', '-c', 'echo sub'], capture_output=True, text=True).stdout
assert out == 'sub\n', out
p = subprocess.Popen(['sleep', '10']); p.send_signal(signal.SIGTERM); p.wait()
r, w = os.pipe(); pid = os.fork()
if pid == 0:
    os.write(w, b'x'); os._exit(0)
assert os.read(r, 1) == b'x'; os.waitpid(pid, 0)
)";
constexpr char kPythonAsyncio[] = R"(
import asyncio
async def handle(r, w):
    w.write(await r.read(5)); await w.drain(); w.close()
async def main():
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection('127.0.0.1', port)
    w.write(b'hello'); await w.drain()
    data = await r.read(); w.close(); server.close(); await server.wait_closed()
    proc = await asyncio.create_subprocess_exec('echo', 'x', stdout=asyncio.subprocess.PIPE)
    assert (await proc.communicate())[0] == b'x\n'
    await asyncio.sleep(0.01)
    return data
assert asyncio.run(main()) == b'hello'
)";
constexpr char kPythonMmap[] = R"(
import mmap, tempfile, os
with tempfile.TemporaryFile() as f:
    f.write(b'x' * 8192); f.flush()
    m = mmap.mmap(f.fileno(), 8192); m[0:1] = b'y'; m.flush(); assert m[:2] == b'yx'; m.close()
a = mmap.mmap(-1, 1 << 20); a.write(b'anon'); a.madvise(mmap.MADV_DONTNEED); a.close()
fd = os.memfd_create('t'); os.ftruncate(fd, 4096); os.close(fd)
)";
constexpr char kPythonSockets[] = R"(
import socket, select, selectors
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
c = socket.create_connection(s.getsockname()); a, _ = s.accept()
c.sendall(b'ok'); assert a.recv(2) == b'ok'
sel = selectors.DefaultSelector(); sel.register(a, selectors.EVENT_READ); c.sendall(b'x')
assert sel.select(1); assert select.select([a], [], [], 1)[0]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.sendto(b'u', u.getsockname())
assert u.recvfrom(1)[0] == b'u'
x, y = socket.socketpair(); x.send(b'p'); assert y.recv(1) == b'p'
six = socket.socket(socket.AF_INET6); six.bind(('::1', 0)); six.listen()
ux = socket.socket(socket.AF_UNIX); ux.bind('\0tessera-test'); ux.listen()
try:
    socket.create_connection(('192.0.2.1', 9), timeout=0.2)
except OSError:
    pass
)";
constexpr char kPythonMultiprocessing[] = R"(
import multiprocessing as mp, concurrent.futures as cf
def square(x): return x * x
if __name__ == '__main__':
    for method in ('fork', 'spawn', 'forkserver'):
        ctx = mp.get_context(method)
        with ctx.Pool(2) as p: assert p.map(square, [1, 2, 3]) == [1, 4, 9]
    q = mp.Queue(); l = mp.Lock(); v = mp.Value('i', 3)
    p = mp.Process(target=q.put, args=(7,)); p.start(); assert q.get(timeout=5) == 7; p.join()
    with l: pass
    with cf.ProcessPoolExecutor(2) as ex: assert list(ex.map(square, [4])) == [16]
    with cf.ThreadPoolExecutor(2) as ex: assert list(ex.map(square, [5])) == [25]
)";
constexpr char kPythonStdlib[] = R"(
import json, hashlib, sqlite3, tempfile, shutil, os, time, random, zlib, ssl, ctypes, locale
db = sqlite3.connect(':memory:'); db.execute('create table t(x)'); db.execute('insert into t values (1)')
d = tempfile.mkdtemp(); open(os.path.join(d, 'f'), 'w').write('x'); shutil.rmtree(d)
hashlib.sha256(b'x').hexdigest(); zlib.compress(b'x' * 100); random.SystemRandom().random()
time.sleep(0.01); time.monotonic(); os.urandom(8); ssl.create_default_context()
ctypes.CDLL(None).getpid()
os.sched_getaffinity(0); os.getloadavg(); os.cpu_count(); os.statvfs('/')
)";

TEST_F(SeccompWorkloadTest, PythonIsNeverDenied) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3 on the host";
  storage::TemplateBuildOptions options;
  options.source = storage::TemplateSource::kHost;
  ASSERT_TRUE(storage::BuildTemplate(layout_, "hostpy", options));
  CellSpec spec = Spec("pywork");
  spec.template_name = "hostpy";
  spec.memory_mib = 512;
  Cell cell = MustStartMonitored(spec);
  auto py = [](const char* code) {
    std::string quoted;
    for (const char* c = code; *c != '\0'; ++c) quoted += *c == '\'' ? std::string("'\\''") : std::string(1, *c);
    return "cd /tmp && /usr/bin/python3 -c '" + quoted + "'";
  };
  ExpectNeverDenied(cell, {{"python3 -c threads", py(kPythonThreads)},
                           {"python3 -c subprocess", py(kPythonSubprocess)},
                           {"python3 -c asyncio", py(kPythonAsyncio)},
                           {"python3 -c mmap", py(kPythonMmap)},
                           {"python3 -c sockets", py(kPythonSockets)},
                           {"python3 multiprocessing",
                            "cd /tmp && cat > mp.py <<'EOF'" + std::string(kPythonMultiprocessing) +
                                "EOF\n/usr/bin/python3 mp.py"},
                           {"python3 -c stdlib", py(kPythonStdlib)}});
  ASSERT_TRUE(cell.Stop());
}

// apt and dpkg in a Debian template (opt-in like the debootstrap test of
// storage: minutes and network for the build). Cells are offline, so apt
// works against a local file repository made inside the qube.
TEST_F(SeccompWorkloadTest, AptIsNeverDenied) {
  const char* opt = std::getenv("TESSERA_TEST_DEBOOTSTRAP");
  if (opt == nullptr || std::string(opt) != "1") {
    GTEST_SKIP() << "set TESSERA_TEST_DEBOOTSTRAP=1 to build a Debian template (minutes, network)";
  }
  storage::TemplateBuildOptions options;
  options.source = storage::TemplateSource::kDebootstrap;
  if (const char* mirror = std::getenv("TESSERA_TEST_DEBOOTSTRAP_MIRROR")) options.mirror = mirror;
  auto built = storage::BuildTemplate(layout_, "debian", options);
  ASSERT_TRUE(built) << built.error().ToString();
  CellSpec spec = Spec("aptwork");
  spec.template_name = "debian";
  spec.memory_mib = 1024;
  Cell cell = MustStartMonitored(spec);
  const std::string repo = "/tmp/repo";
  ExpectNeverDenied(
      cell,
      {{"dpkg -l", "dpkg -l >/dev/null && dpkg -s dpkg >/dev/null"},
       {"apt-cache policy", "apt-cache policy >/dev/null && apt-cache policy dpkg >/dev/null"},
       {"local repository",
        "set -e; mkdir -p " + repo + "/pkg/DEBIAN " + repo + "/pkg/usr/share/tessera-hello; "
        "echo hi > " + repo + "/pkg/usr/share/tessera-hello/hello; "
        "printf 'Package: tessera-hello\\nVersion: 1.0\\nArchitecture: all\\n"
        "Maintainer: t <t@example.org>\\nDescription: test package\\n' > " + repo + "/pkg/DEBIAN/control; "
        "dpkg-deb --build " + repo + "/pkg " + repo + "/tessera-hello_1.0_all.deb >/dev/null; "
        "cd " + repo + "; { dpkg-deb -f tessera-hello_1.0_all.deb; "
        "echo Filename: ./tessera-hello_1.0_all.deb; "
        "echo Size: $(stat -c %s tessera-hello_1.0_all.deb); "
        "echo SHA256: $(sha256sum tessera-hello_1.0_all.deb | cut -d' ' -f1); echo; } > Packages; "
        "echo 'deb [trusted=yes] file:" + repo + " ./' > /etc/apt/sources.list; "
        "rm -f /etc/apt/sources.list.d/*"},
       {"apt-get update", "apt-get update 2>&1"},
       {"apt-get install --download-only",
        // (a file: repository's packages are used in place, not copied)
        "apt-get install -y --download-only tessera-hello 2>&1 | grep -q 'Download complete'"},
       {"apt-get install", "apt-get install -y tessera-hello 2>&1 && "
                           "cat /usr/share/tessera-hello/hello && dpkg -s tessera-hello >/dev/null"},
       {"apt-get remove", "apt-get remove -y tessera-hello 2>&1 && ! dpkg -s tessera-hello 2>/dev/null"
                          " | grep -q 'Status: install ok'"}});
  ASSERT_TRUE(cell.Stop());
}

}  // namespace
}  // namespace tessera::cell::testing
