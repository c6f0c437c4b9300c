// Unit tests of tesserad's pure parts: state file, apply diff, authorisation
// decision, audit rotation.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "common/fs.h"
#include "config/model.h"
#include "daemon/audit.h"
#include "daemon/auth.h"
#include "daemon/diff.h"
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
