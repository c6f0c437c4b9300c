// Unit tests of tesserad's pure parts: state file, apply diff, authorisation
// decision, audit rotation.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/fs.h"
#include "config/model.h"
#include "daemon/audit.h"
#include "daemon/auth.h"
#include "daemon/diff.h"
#include "daemon/host_sources.h"
#include "daemon/state.h"

namespace tessera::daemon {
namespace {

TEST(State, RoundTrip) {
  DaemonState s;
  s.next_disposable = 42;
  s.qubes["work"] = {QubeState::kRunning, "", DisposableOwner::kNone, "", "t"};
  s.qubes["disp7"] = {QubeState::kStopping, "", DisposableOwner::kRun, "default-dvm", "t2"};
  s.qubes["vault"] = {QubeState::kFailed, "boom", DisposableOwner::kNone, "", "t3"};
  auto back = StateFromJson(StateToJson(s));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, s);
}

TEST(State, CorruptIsAnError) {
  EXPECT_FALSE(StateFromJson("{"));
  EXPECT_FALSE(StateFromJson(R"({"format":1,"qubes":{"a":{"state":"dancing"}}})"));
  EXPECT_FALSE(StateFromJson(R"({"format":9,"qubes":{}})"));
}

config::Qube MakeQube(const std::string& name) {
  config::Qube q;
  q.name = name;
  q.template_name = "base";
  q.memory_mib = 512;
  return q;
}

TEST(Diff, AddedRemovedChanged) {
  config::System a, b;
  a.qubes = {MakeQube("gone"), MakeQube("same"), MakeQube("work")};
  b.qubes = {MakeQube("new"), MakeQube("same"), MakeQube("work")};
  b.qubes[2].memory_mib = 1024;
  b.qubes[2].label = "blue";
  SystemDiff d = DiffSystems(a, b);
  ASSERT_EQ(d.qubes.size(), 3u);
  EXPECT_EQ(d.qubes[0].qube, "gone");
  EXPECT_EQ(d.qubes[0].kind, ChangeKind::kRemoved);
  EXPECT_EQ(d.qubes[1].qube, "new");
  EXPECT_EQ(d.qubes[1].kind, ChangeKind::kAdded);
  EXPECT_EQ(d.qubes[2].qube, "work");
  EXPECT_TRUE(d.qubes[2].needs_restart);
  ASSERT_EQ(d.qubes[2].fields.size(), 2u);
  EXPECT_EQ(d.qubes[2].fields[0].field, "memory");
  EXPECT_EQ(d.qubes[2].fields[0].before, "512");
  EXPECT_EQ(d.qubes[2].fields[0].after, "1024");
  EXPECT_TRUE(d.qubes[2].fields[0].needs_restart);
  EXPECT_EQ(d.qubes[2].fields[1].field, "label");
  EXPECT_FALSE(d.qubes[2].fields[1].needs_restart);
}

TEST(Diff, IoLimitsNeedARestart) {
  config::System a, b;
  a.qubes = {MakeQube("work")};
  b = a;
  b.qubes[0].io_weight = 300;
  b.qubes[0].io_max.write_bps = 1 << 20;
  SystemDiff d = DiffSystems(a, b);
  ASSERT_EQ(d.qubes.size(), 1u);
  EXPECT_TRUE(d.qubes[0].needs_restart);
  ASSERT_EQ(d.qubes[0].fields.size(), 2u);
  EXPECT_EQ(d.qubes[0].fields[0].field, "io_weight");
  EXPECT_EQ(d.qubes[0].fields[0].after, "300");
  EXPECT_EQ(d.qubes[0].fields[1].field, "io_max");
  EXPECT_EQ(d.qubes[0].fields[1].after, "read_bps=0,write_bps=1048576,read_iops=0,write_iops=0");
  EXPECT_TRUE(d.qubes[0].fields[1].needs_restart);
}

TEST(Diff, ANewNixRootOfTheTemplateNeedsItsQubesRestarted) {
  config::Qube base;
  base.name = "base";
  base.klass = config::QubeClass::kTemplate;
  base.template_source = "nix";
  base.nix = config::NixTemplate{"/nix/store/r1", "/c1", "erofs"};
  config::System a, b;
  a.qubes = {base, MakeQube("work")};
  b = a;
  b.qubes[0].nix->root = "/nix/store/r2";
  SystemDiff d = DiffSystems(a, b);
  ASSERT_EQ(d.qubes.size(), 2u);
  EXPECT_EQ(d.qubes[0].fields[0].field, "nix");
  EXPECT_EQ(d.qubes[1].qube, "work");
  EXPECT_TRUE(d.qubes[1].needs_restart);
  ASSERT_EQ(d.qubes[1].fields.size(), 1u);
  EXPECT_EQ(d.qubes[1].fields[0].field, "template_root");
  EXPECT_EQ(d.qubes[1].fields[0].before, "/nix/store/r1 (erofs)");
  EXPECT_EQ(d.qubes[1].fields[0].after, "/nix/store/r2 (erofs)");
}

TEST(Diff, LabelOnlyNeedsNoRestartAndIdenticalIsEmpty) {
  config::System a, b;
  a.qubes = {MakeQube("work")};
  b = a;
  EXPECT_TRUE(DiffSystems(a, b).empty());
  b.qubes[0].label = "green";
  b.qubes[0].tags = {"x"};
  SystemDiff d = DiffSystems(a, b);
  ASSERT_EQ(d.qubes.size(), 1u);
  EXPECT_FALSE(d.qubes[0].needs_restart);
  b.default_dispvm = "dvm";
  EXPECT_EQ(DiffSystems(a, b).system_fields.size(), 1u);
}

config::Qube MakeDvm(const std::string& name, int preload) {
  config::Qube q = MakeQube(name);
  q.klass = config::QubeClass::kDisposableTemplate;
  if (preload > 0) q.features["preload-dispvm-max"] = std::to_string(preload);
  return q;
}

// disp1, disp2 preloaded from dvm; disp3 runs a command.
std::vector<RunningDisposable> DvmDisposables() {
  return {{"disp1", "dvm", true}, {"disp2", "dvm", true}, {"disp3", "dvm", false}};
}

TEST(DiffDisposables, AChangedTemplateReplacesItsPreloadedOnes) {
  config::System a, b;
  a.qubes = {MakeDvm("dvm", 2)};
  b = a;
  b.qubes[0].memory_mib = 768;
  b.qubes[0].cpus = 2;
  SystemDiff d = DiffSystems(a, b, DvmDisposables());
  ASSERT_EQ(d.disposables.size(), 1u);
  const DisposableChange& c = d.disposables[0];
  EXPECT_EQ(c.dvm_template, "dvm");
  EXPECT_EQ(c.replaced, (std::vector<std::string>{"disp1", "disp2"}));
  EXPECT_TRUE(c.stopped.empty());
  EXPECT_TRUE(c.in_use_stopped.empty());
  EXPECT_EQ(c.in_use_kept, (std::vector<std::string>{"disp3"}));
  EXPECT_EQ(c.reason, "memory and cpus changed");
  EXPECT_EQ(DiffToJson(d)["disposables"][0]["replaced"].size(), 2u);
  // A label is read live: nothing to replace.
  b = a;
  b.qubes[0].label = "green";
  EXPECT_TRUE(DiffSystems(a, b, DvmDisposables()).disposables.empty());
}

TEST(DiffDisposables, ARemovedTemplateTakesEveryDisposableAlong) {
  config::System a, b;
  a.qubes = {MakeDvm("dvm", 2), MakeQube("work")};
  b.qubes = {MakeQube("work")};
  SystemDiff d = DiffSystems(a, b, DvmDisposables());
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].stopped, (std::vector<std::string>{"disp1", "disp2"}));
  EXPECT_EQ(d.disposables[0].in_use_stopped, (std::vector<std::string>{"disp3"}));
  EXPECT_TRUE(d.disposables[0].replaced.empty());
  EXPECT_EQ(d.disposables[0].reason, "template removed");
  // Still there but no longer a disposable template: the same.
  b.qubes = {MakeQube("dvm"), MakeQube("work")};
  d = DiffSystems(a, b, DvmDisposables());
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].stopped.size(), 2u);
  EXPECT_EQ(d.disposables[0].in_use_stopped.size(), 1u);
  EXPECT_EQ(d.disposables[0].reason, "no longer a disposable template");
}

TEST(DiffDisposables, APreloadCountChangeResizesThePoolWithoutARestart) {
  config::System a, b;
  a.qubes = {MakeDvm("dvm", 2)};
  b.qubes = {MakeDvm("dvm", 1)};
  SystemDiff d = DiffSystems(a, b, DvmDisposables());
  ASSERT_EQ(d.qubes.size(), 1u);
  ASSERT_EQ(d.qubes[0].fields.size(), 1u);
  EXPECT_EQ(d.qubes[0].fields[0].field, "preload-dispvm-max");
  EXPECT_FALSE(d.qubes[0].needs_restart) << "the disposable template itself keeps running";
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].stopped, (std::vector<std::string>{"disp2"}));
  EXPECT_TRUE(d.disposables[0].replaced.empty());
  EXPECT_TRUE(d.disposables[0].in_use_kept.empty());
  EXPECT_EQ(d.disposables[0].reason, "preload count 2 -> 1");
  // Raised: the pool grows, nothing stops.
  d = DiffSystems(b, a, {{"disp1", "dvm", true}});
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].added, 1);
  EXPECT_TRUE(d.disposables[0].stopped.empty());
  // Changed settings and a lower count at once: as many replaced as the new
  // count keeps, the rest stopped.
  b.qubes[0].memory_mib = 300;
  d = DiffSystems(a, b, DvmDisposables());
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].replaced, (std::vector<std::string>{"disp1"}));
  EXPECT_EQ(d.disposables[0].stopped, (std::vector<std::string>{"disp2"}));
  EXPECT_EQ(d.disposables[0].reason, "memory changed; preload count 2 -> 1");
  // Another template's disposables are not touched.
  a.qubes.push_back(MakeDvm("other", 1));
  b.qubes.push_back(MakeDvm("other", 1));
  d = DiffSystems(a, b, {{"disp1", "dvm", true}, {"disp9", "other", true}});
  ASSERT_EQ(d.disposables.size(), 1u);
  EXPECT_EQ(d.disposables[0].dvm_template, "dvm");
}

// The diff shows default_dispvm as resolved: the system default by name (not
// a placeholder), and "none" for a qube without one.
TEST(Diff, DefaultDispVmShowsTheResolvedSystemDefault) {
  config::System a, b;
  a.qubes = {MakeQube("work"), MakeQube("offline")};
  b = a;
  b.default_dispvm = "dvm";
  b.qubes[0].default_dispvm = "dvm";  // what the validator gives a qube inheriting it
  SystemDiff d = DiffSystems(a, b);
  ASSERT_EQ(d.system_fields.size(), 1u);
  EXPECT_EQ(d.system_fields[0].before, "none");
  EXPECT_EQ(d.system_fields[0].after, "dvm");
  ASSERT_EQ(d.qubes.size(), 1u);
  EXPECT_EQ(d.qubes[0].qube, "work");
  ASSERT_EQ(d.qubes[0].fields.size(), 1u);
  EXPECT_EQ(d.qubes[0].fields[0].field, "default_dispvm");
  EXPECT_EQ(d.qubes[0].fields[0].before, "none");
  EXPECT_EQ(d.qubes[0].fields[0].after, "dvm (system default)");

  // A new system default reaches every qube that inherits it.
  config::System c = b;
  c.default_dispvm = "dvm2";
  c.qubes[0].default_dispvm = "dvm2";
  d = DiffSystems(b, c);
  ASSERT_EQ(d.qubes.size(), 1u);
  EXPECT_EQ(d.qubes[0].fields[0].before, "dvm (system default)");
  EXPECT_EQ(d.qubes[0].fields[0].after, "dvm2 (system default)");
}

TEST(Auth, RootOrAdminGroupOnly) {
  Peer root{1, 0, 0, {}};
  Peer member{1, 1000, 1000, {27, 4242}};
  Peer primary{1, 1000, 4242, {}};
  Peer other{1, 1000, 1000, {27}};
  EXPECT_TRUE(IsAuthorized(root, std::nullopt));
  EXPECT_TRUE(IsAuthorized(member, 4242));
  EXPECT_TRUE(IsAuthorized(primary, 4242));
  EXPECT_FALSE(IsAuthorized(other, 4242));
  EXPECT_FALSE(IsAuthorized(member, std::nullopt));  // no group configured: root only
}

TEST(Auth, HostSourcesNeedRootOrTheirOwnGroupNotTheAdminGroup) {
  Peer root{1, 0, 0, {}};
  Peer admin{1, 1000, 1000, {4242}};  // in the admin group (4242) only
  Peer allowed{1, 1000, 1000, {4242, 77}};
  Peer allowed_primary{1, 1000, 77, {}};
  EXPECT_TRUE(MayUseHostSources(root, std::nullopt));
  EXPECT_TRUE(IsAuthorized(admin, 4242));
  EXPECT_FALSE(MayUseHostSources(admin, std::nullopt)) << "no --allow-host-sources: root only";
  EXPECT_FALSE(MayUseHostSources(admin, 77));
  EXPECT_TRUE(MayUseHostSources(allowed, 77));
  EXPECT_TRUE(MayUseHostSources(allowed_primary, 77));
}

TEST(HostSources, OnlyNewHostPathSourcesCount) {
  EXPECT_TRUE(IsHostPathSource("host"));
  EXPECT_TRUE(IsHostPathSource("dir:/srv/root"));
  EXPECT_FALSE(IsHostPathSource("busybox"));
  EXPECT_FALSE(IsHostPathSource("debootstrap"));
  EXPECT_FALSE(IsHostPathSource("hostile"));
  config::System running, next;
  config::Qube kept = MakeQube("kept");
  kept.klass = config::QubeClass::kTemplate;
  kept.template_source = "dir:/srv/approved";
  running.qubes = {kept, MakeQube("work")};
  next = running;
  EXPECT_TRUE(NewHostSources(running, next).empty()) << "already running: accepted before";
  config::Qube added = kept;
  added.name = "added";
  added.template_source = "host";
  next.qubes.push_back(added);
  next.qubes[0].template_source = "dir:/root";  // `kept` now points elsewhere
  EXPECT_EQ(NewHostSources(running, next),
            (std::vector<HostSource>{{"kept", "dir:/root"}, {"added", "host"}}));
  next.qubes[0].template_source = "busybox";
  EXPECT_EQ(NewHostSources(running, next), (std::vector<HostSource>{{"added", "host"}}));
  // The RPC policy is read from policy_dir: a new one counts as a host path.
  next.qubes.pop_back();
  next.policy_dir = "/home/mallory/policy.d";
  EXPECT_EQ(NewHostSources(running, next),
            (std::vector<HostSource>{{"", "policy_dir:/home/mallory/policy.d"}}));
}

TEST(Auth, PeerOfSocketpairIsUs) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd a(fds[0]), b(fds[1]);
  auto peer = GetPeer(a.get());
  ASSERT_TRUE(peer) << peer.error().ToString();
  EXPECT_EQ(peer->uid, ::getuid());
  EXPECT_EQ(peer->pid, ::getpid());
}

TEST(Audit, WritesJsonLinesAndRotates) {
  char tmpl[] = "/tmp/tessera-audit-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = std::string(tmpl) + "/audit";
  AuditOptions options;
  options.max_bytes = 400;
  options.keep_files = 2;
  options.journald = false;
  auto log = AuditLog::Open(dir, options);
  ASSERT_TRUE(log) << log.error().ToString();
  for (int i = 0; i < 40; ++i) (*log)->Write({{"kind", "test"}, {"i", i}});
  auto current = ReadFile(dir + "/audit.log");
  ASSERT_TRUE(current);
  EXPECT_LE(current->size(), 400u);
  EXPECT_NE(current->find("\"i\":39"), std::string::npos);
  EXPECT_TRUE(ReadFile(dir + "/audit.log.1"));
  EXPECT_TRUE(ReadFile(dir + "/audit.log.2"));
  EXPECT_FALSE(ReadFile(dir + "/audit.log.3"));  // oldest dropped
  auto line = current->substr(0, current->find('\n'));
  auto parsed = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_TRUE(parsed.contains("ts"));
  std::string cmd = std::string("rm -rf ") + tmpl;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace tessera::daemon
