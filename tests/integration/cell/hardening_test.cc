// Hardening against a qube that attacks the host's shared resources or its
// own cell's protections (issue 9's attack run): each test tries the attack
// from inside a real cell and asserts it fails.

#include <linux/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

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
                      "/hprobe ptys 1000 hold > /tmp/ptys 2>&1 & "
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

}  // namespace
}  // namespace tessera::cell::testing
