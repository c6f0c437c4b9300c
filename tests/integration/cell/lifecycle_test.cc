// Start, stop, disposables, crash recovery (Adopt/Cleanup) and the CLI.

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "cell/cgroups.h"
#include "common/fs.h"
#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using ::testing::HasSubstr;

std::set<std::string> ListTree(const std::string& root) {
  std::set<std::string> out;
  std::error_code ec;
  if (!std::filesystem::exists(root, ec)) return out;
  for (auto it = std::filesystem::recursive_directory_iterator(
           root, std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    out.insert(it->path().string());
  }
  return out;
}

// The cgroup directories of one tessera instance (tests run in parallel, so
// other instances' cgroups come and go meanwhile and must not be compared).
std::set<std::string> CgroupDirs(const std::string& runtime_dir) {
  std::set<std::string> out;
  std::string tag = InstanceTag(std::filesystem::canonical(runtime_dir).string());
  for (const char* h : {"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/blkio"}) {
    std::string base = std::string(h) + "/tessera/" + tag;
    if (std::filesystem::is_directory(base)) out.insert(base);
    for (const auto& p : ListTree(base)) {
      if (std::filesystem::is_directory(p)) out.insert(p);
    }
  }
  return out;
}

// The mountinfo lines that mention `dir` (parallel tests mount elsewhere).
std::string MountsUnder(const std::string& dir) {
  std::istringstream in(*ReadFile("/proc/self/mountinfo"));
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.find(dir) != std::string::npos) out += line + "\n";
  }
  return out;
}

bool ProcessExists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

TEST_F(CellTest, DisposableLeavesNoResidue) {
  // Everything the first run of any cell creates once (the busybox template,
  // the state dir skeleton) exists already; the disposable must add nothing.
  {
    Cell warm = MustStart(Spec("warm"));
    ASSERT_TRUE(warm.Stop());
  }
  auto state_before = ListTree(layout_.state_dir);
  auto run_before = ListTree(layout_.runtime_dir);
  auto cg_before = CgroupDirs(layout_.runtime_dir);
  std::string mounts_before = MountsUnder(tmp_);

  CellSpec spec = Spec("disp4242");
  spec.disposable = true;
  Cell cell = MustStart(spec);
  EXPECT_EQ(Sh(cell, "echo data > /rw/file && echo data > /home/user/f && echo ok").out, "ok\n");
  EXPECT_TRUE(std::filesystem::exists(layout_.PrivateVolume("disp4242")));
  // Stopping a cell never touches storage; retiring a disposable removes it.
  ASSERT_TRUE(backend::Retire(cell, layout_, /*disposable=*/true, std::chrono::seconds(5)));

  EXPECT_EQ(ListTree(layout_.state_dir), state_before);
  EXPECT_EQ(ListTree(layout_.runtime_dir), run_before);
  EXPECT_EQ(CgroupDirs(layout_.runtime_dir), cg_before);
  EXPECT_EQ(MountsUnder(tmp_), mounts_before);
  auto idmap = ReadFile(layout_.state_dir + "/idmap.json");
  if (idmap) {
    EXPECT_EQ(idmap->find("disp4242"), std::string::npos) << *idmap;
  }
}

TEST_F(CellTest, StopKillsEverythingAndRemovesCgroupsAndScratch) {
  Cell cell = MustStart(Spec("stopper"));
  // Out of the command's session (which is hung up when the command exits):
  // started by a setsid'd shell, in the foreground, so that they are out
  // before the command ends.
  ASSERT_EQ(Sh(cell,
               "setsid sh -c 'for i in 1 2 3; do sleep 1000 >/dev/null 2>&1 & done'; "
               "echo ok")
                .out,
            "ok\n");
  // A process that ignores SIGTERM must still die (SIGKILL after the grace).
  ASSERT_EQ(Sh(cell, "setsid sh -c \"trap '' TERM; sleep 1000 >/dev/null 2>&1 &\"; echo ok").out,
            "ok\n");
  auto dirs = cell.cgroup_dirs();
  ASSERT_FALSE(dirs.empty());
  auto cg = CellCgroups::ForQube(std::filesystem::canonical(layout_.runtime_dir), "stopper");
  ASSERT_TRUE(cg);
  auto pids = cg->Pids();
  ASSERT_TRUE(pids);
  EXPECT_GE(pids->size(), 5u);
  pid_t init = cell.init_pid();
  ASSERT_TRUE(cell.Stop(std::chrono::milliseconds(200)));
  for (pid_t p : *pids) EXPECT_FALSE(ProcessExists(p)) << "pid " << p << " survived";
  EXPECT_FALSE(ProcessExists(init));
  for (const auto& d : dirs) EXPECT_FALSE(std::filesystem::exists(d)) << d;
  EXPECT_FALSE(std::filesystem::exists(layout_.ScratchDir("stopper")));
  EXPECT_FALSE(cell.Running());
  EXPECT_TRUE(cell.Stop());  // idempotent
  // The private volume of an app qube is kept.
  EXPECT_TRUE(std::filesystem::exists(layout_.PrivateVolume("stopper")));
}

TEST_F(CellTest, SecondStartOfRunningCellIsRefused) {
  Cell cell = MustStart(Spec("once"));
  auto again = Cell::Start(layout_, Spec("once"), Options());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().errno_value(), EBUSY);
  EXPECT_EQ(Sh(cell, "echo still").out, "still\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, StandaloneRootIsCopiedOncePersistsAndIsOwnedByTheQubesRange) {
  CellSpec spec = Spec("solo");
  spec.root = RootKind::kStandalone;  // copied from "base" at the first start
  {
    Cell cell = MustStart(spec);
    EXPECT_EQ(Sh(cell, "stat -c %u:%g /bin/busybox && echo kept > /etc/solo-mark && echo ok").out,
              "0:0\nok\n");
    ASSERT_TRUE(cell.Stop());
  }
  auto ids = storage::AllocateIdRange(layout_, "solo");
  ASSERT_TRUE(ids) << ids.error().ToString();
  struct stat st {};
  ASSERT_EQ(::stat((layout_.StandaloneRoot("solo") + "/etc/solo-mark").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ids->base);  // the qube's root, never host root
  EXPECT_EQ(st.st_gid, ids->base);
  // The template itself is untouched.
  EXPECT_FALSE(std::filesystem::exists(layout_.TemplateRoot("base") + "/etc/solo-mark"));
  {
    Cell cell = MustStart(spec);
    EXPECT_EQ(Sh(cell, "cat /etc/solo-mark").out, "kept\n");
    ASSERT_TRUE(cell.Stop());
  }
}

TEST_F(CellTest, ConcurrentStartsOfOneQubeYieldOneCell) {
  // Four starters race for the same qube: exactly one cell comes up, every
  // other starter gets EBUSY, and the winner's cell is intact.
  constexpr int kStarters = 4;
  std::vector<std::optional<Result<Cell>>> results(kStarters);
  started_.push_back("contended");
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kStarters; ++i) {
      threads.emplace_back([&, i] { results[i].emplace(Cell::Start(layout_, Spec("contended"), Options())); });
    }
    for (auto& t : threads) t.join();
  }
  int winners = 0;
  Cell* winner = nullptr;
  for (auto& r : results) {
    ASSERT_TRUE(r.has_value());
    if (*r) {
      ++winners;
      winner = &**r;
    } else {
      EXPECT_EQ(r->error().errno_value(), EBUSY) << r->error().ToString();
    }
  }
  ASSERT_EQ(winners, 1);
  EXPECT_EQ(Sh(*winner, "hostname").out, "contended\n");
  ASSERT_TRUE(winner->Stop());
  // No lock file is left behind.
  for (const auto& p : ListTree(layout_.runtime_dir))
    EXPECT_EQ(p.find(".lock"), std::string::npos) << p;
}

TEST_F(CellTest, ChildDiesWhenTheStarterDiesBeforeReleasingIt) {
  // The starter dies right after clone (SIGKILL of the daemon at the worst
  // moment). The half-made child must go too, not hang on to the starter's
  // files (its qube lock, the daemon's lock and socket): a new start of the
  // same qube must succeed promptly.
  started_.push_back("orphan");
  pid_t starter = ::fork();
  ASSERT_GE(starter, 0);
  if (starter == 0) {
    auto cell = Cell::Start(layout_, Spec("orphan"), Options({.exit_after_clone = true}));
    _exit(cell ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(starter, &status, 0), starter);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 86) << status;
  Result<Cell> cell = Err(Error("not tried", EBUSY));
  for (int i = 0; i < 100; ++i) {
    cell = Cell::Start(layout_, Spec("orphan"), Options());
    if (cell || cell.error().errno_value() != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(cell) << cell.error().ToString();
  EXPECT_EQ(Sh(*cell, "hostname").out, "orphan\n");
  ASSERT_TRUE(cell->Stop());
}

TEST_F(CellTest, CellsLeaveTheStartersSessionAndProcessGroup) {
  Cell cell = MustStart(Spec("session"));
  pid_t init = cell.init_pid();
  EXPECT_EQ(::getsid(init), init);
  EXPECT_EQ(::getpgid(init), init);
  EXPECT_NE(::getpgid(init), ::getpgrp());
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, AdoptAfterStarterCrash) {
  // The starter (a forked process standing in for the daemon) is SIGKILLed
  // after starting the cell; the cell lives on and a new process adopts it.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  started_.push_back("survivor");
  pid_t starter = ::fork();
  ASSERT_GE(starter, 0);
  if (starter == 0) {
    ::close(ready[0]);
    auto cell = Cell::Start(layout_, Spec("survivor"), Options());
    pid_t init = cell ? cell->init_pid() : -1;
    (void)!::write(ready[1], &init, sizeof(init));
    ::pause();
    _exit(0);
  }
  ::close(ready[1]);
  pid_t init = -1;
  ASSERT_EQ(::read(ready[0], &init, sizeof(init)), static_cast<ssize_t>(sizeof(init)));
  ::close(ready[0]);
  ASSERT_GT(init, 0) << "start in the starter process failed";
  ::kill(starter, SIGKILL);
  ::waitpid(starter, nullptr, 0);
  ASSERT_TRUE(ProcessExists(init));

  auto cell = Cell::Adopt(layout_, "survivor");
  ASSERT_TRUE(cell) << cell.error().ToString();
  EXPECT_EQ(cell->init_pid(), init);
  EXPECT_TRUE(cell->Running());
  EXPECT_EQ(Sh(*cell, "hostname").out, "survivor\n");
  ASSERT_TRUE(cell->Stop(std::chrono::seconds(2)));
  EXPECT_FALSE(std::filesystem::exists(layout_.ScratchDir("survivor")));
  // Adopting a stopped cell fails cleanly.
  EXPECT_FALSE(Cell::Adopt(layout_, "survivor"));
}

TEST_F(CellTest, AdoptRefusesARecycledPid) {
  Cell cell = MustStart(Spec("recycled"));
  std::string record = layout_.ScratchDir("recycled") + "/cell.json";
  std::string text = *ReadFile(record);
  // Same pid, different start time: must not be taken for the cell's init.
  size_t pos = text.find("\"start_time\": ");
  ASSERT_NE(pos, std::string::npos) << text;
  text.replace(pos, std::string("\"start_time\": ").size(), "\"start_time\": 1");
  ASSERT_TRUE(WriteFileAtomic(record, text, 0600));
  auto adopted = Cell::Adopt(layout_, "recycled");
  ASSERT_FALSE(adopted);
  EXPECT_EQ(adopted.error().errno_value(), ESRCH);
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, CleanupRemovesWhatACrashLeft) {
  started_.push_back("crashed");
  pid_t starter = ::fork();
  ASSERT_GE(starter, 0);
  if (starter == 0) {
    auto cell = Cell::Start(layout_, Spec("crashed"), Options());
    _exit(cell ? 0 : 1);  // leaves the cell running without stopping it
  }
  int status = 0;
  ASSERT_EQ(::waitpid(starter, &status, 0), starter);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto cg = CellCgroups::ForQube(std::filesystem::canonical(layout_.runtime_dir), "crashed");
  ASSERT_TRUE(cg);
  ASSERT_FALSE(cg->Pids()->empty());
  ASSERT_TRUE(Cell::Cleanup(layout_, "crashed"));
  for (const auto& d : cg->dirs()) EXPECT_FALSE(std::filesystem::exists(d)) << d;
  EXPECT_FALSE(std::filesystem::exists(layout_.ScratchDir("crashed")));
  // A fresh start of the same qube works.
  Cell cell = MustStart(Spec("crashed"));
  EXPECT_EQ(Sh(cell, "echo fresh").out, "fresh\n");
  ASSERT_TRUE(cell.Stop());
}

TEST_F(CellTest, ConcurrentCommandsReportTheirOwnExits) {
  Cell cell = MustStart(Spec("concurrent"));
  std::vector<std::thread> threads;
  std::vector<RunResult> results(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      // Later-started commands end first.
      results[i] = Sh(cell, "sleep 0." + std::to_string(6 - i) + "; echo " + std::to_string(i) +
                                "; exit " + std::to_string(10 + i));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(results[i].code, 10 + i) << results[i].err;
    EXPECT_EQ(results[i].out, std::to_string(i) + "\n");
  }
  ASSERT_TRUE(cell.Stop());
}

// Ignored signals survive exec; a starter that ignores SIGINT (a shell's
// background job) must not pass that on to the qube's commands.
TEST_F(CellTest, CommandsStartWithDefaultSignalsAndMask) {
  struct sigaction old_int, old_quit, ign{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ign, &old_int);
  ::sigaction(SIGQUIT, &ign, &old_quit);
  auto started = Start(Spec("signals"));
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  ASSERT_TRUE(started) << started.error().ToString();
  // Not through sh: a shell sets dispositions of its own.
  RunResult r = Run(*started, {"grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  ASSERT_TRUE(started->Stop());
}

// The qube's root owns /etc/passwd, which PID 1 reads to resolve a user: a
// FIFO there is refused at once (it would block a reader forever) and the
// agent keeps serving.
TEST_F(CellTest, AgentRefusesAFifoAsPasswdAndKeepsServing) {
  Cell cell = MustStart(Spec("fifo"));
  ASSERT_EQ(Sh(cell, "rm /etc/passwd && mkfifo /etc/passwd").code, 0);
  RunResult named = Run(cell, {"/bin/true"}, "nobody");
  EXPECT_EQ(named.code, -1);
  EXPECT_THAT(named.err, HasSubstr("/etc/passwd"));
  // A numeric user needs no lookup (and the command avoids the FIFO too).
  EXPECT_EQ(Run(cell, {"/bin/sh", "-c", "grep ^Uid: /proc/self/status"}, "1000").out,
            "Uid:\t1000\t1000\t1000\t1000\n");
  EXPECT_EQ(Sh(cell, "echo alive").out, "alive\n");
  ASSERT_TRUE(cell.Stop());
}

// The CLI end to end: config file, template built on demand, stdio passed
// through, exit status, disposables destroyed.
class CellCliTest : public CellTest {
 protected:
  int RunCli(const std::string& args, std::string* out) {
    std::string config = tmp_ + "/system.toml";
    WriteFileAtomic(
        config,
        "[qubes.fresh]\nclass = \"template\"\nsource = \"busybox\"\n"
        "[qubes.work]\nclass = \"app\"\ntemplate = \"fresh\"\nmemory = 128\n"
        "[qubes.dvm]\nclass = \"disposable-template\"\ntemplate = \"fresh\"\nmemory = 128\n",
        0644);
    std::string cmd = "TESSERA_STATE_DIR=" + layout_.state_dir +
                      " TESSERA_RUNTIME_DIR=" + layout_.runtime_dir +
                      " TESSERA_AGENT=" + TESSERA_BINARY_DIR + "/tessera-agent " + TESSERA_CLI +
                      " cell run --config " + config + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
    int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

TEST_F(CellCliTest, RunBuildsTemplateRunsCommandAndPassesExitStatus) {
  std::string out;
  EXPECT_EQ(RunCli("work -- /bin/sh -c 'echo hi from $(hostname); exit 3'", &out), 3);
  EXPECT_THAT(out, HasSubstr("template fresh does not exist yet; building it from busybox"));
  EXPECT_THAT(out, HasSubstr("hi from work"));
  out.clear();
  EXPECT_EQ(RunCli("work -- /no/such/cmd", &out), 127) << out;
  out.clear();
  auto qubes_before = ListTree(layout_.state_dir + "/qubes");
  EXPECT_EQ(RunCli("--dispvm dvm -- /bin/sh -c 'hostname; touch /rw/x'", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("disp"));
  // Nothing of the disposable is left. Its template, which had no volume,
  // now has its image (made once, for every disposable to copy).
  auto qubes_after = ListTree(layout_.state_dir + "/qubes");
  std::string dvm_dir = layout_.state_dir + "/qubes/dvm";
  EXPECT_THAT(qubes_after, ::testing::Contains(dvm_dir + "/private.img"));
  std::erase_if(qubes_after, [&](const std::string& p) { return p.rfind(dvm_dir, 0) == 0; });
  EXPECT_EQ(qubes_after, qubes_before);
  EXPECT_TRUE(ListTree(layout_.runtime_dir + "/cells").empty());
  out.clear();
  EXPECT_EQ(RunCli("nosuchqube -- /bin/true", &out), 125);
  EXPECT_THAT(out, HasSubstr("nosuchqube"));
}

}  // namespace
}  // namespace tessera::cell::testing
