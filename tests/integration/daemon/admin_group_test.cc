// The admin group is root-equivalent, but host-path template sources (dir:,
// host) make tesserad read host files as root, so they need root or the
// --allow-host-sources group (issue 10). Groups are looked up when asked, so
// one created after the daemon started counts; a missing one is logged at
// start.

#include <grp.h>

#include "config/loader.h"
#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

// A host group created for one test and removed at its end (even when the
// test fails half way).
class TestGroup {
 public:
  explicit TestGroup(std::string name) : name_(std::move(name)) {
    std::string cmd = "groupadd '" + name_ + "'";
    created_ = std::system(cmd.c_str()) == 0;
    if (struct group* g = ::getgrnam(name_.c_str()); created_ && g != nullptr) gid_ = g->gr_gid;
  }
  ~TestGroup() {
    if (!created_) return;
    std::string cmd = "groupdel '" + name_ + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "cannot remove test group " << name_;
  }
  TestGroup(const TestGroup&) = delete;
  TestGroup& operator=(const TestGroup&) = delete;
  bool ok() const { return created_ && gid_ != static_cast<gid_t>(-1); }
  gid_t gid() const { return gid_; }

 private:
  std::string name_;
  bool created_ = false;
  gid_t gid_ = static_cast<gid_t>(-1);
};

// A group name no other test (or host) uses; at most 32 characters.
std::string UniqueGroupName(const std::string& what) {
  return "tt-" + what + "-" + std::to_string(::getpid());
}

// The fixture's system plus a template whose source is a host path.
std::string DescriptionWithSource(const std::string& source) {
  std::string text = std::string(kSystem) +
                     "\n[qubes.dt-hostsrc]\nclass = \"template\"\nsource = \"" + source + "\"\n";
  auto loaded = config::LoadSystemFromString(text, config::Format::kToml, "hostsrc.toml");
  EXPECT_TRUE(loaded.system.has_value());
  return loaded.system ? config::ToJson(*loaded.system) : "";
}

json ApplyParams(const std::string& description, bool dry_run) {
  return {{"description", description}, {"source", "hostsrc.toml"}, {"dry_run", dry_run}};
}

TEST_F(DaemonTest, AdminGroupCreatedAfterStartIsHonouredButGetsNoHostSources) {
  std::string name = UniqueGroupName("adm");
  StartDaemon({"--no-autostart", "--admin-group", name});
  EXPECT_EQ(CallAs(kNobody, kNogroup, {}, "qube.list", json::object()), "permission_denied")
      << "no such group yet: root only";

  TestGroup admins(name);
  ASSERT_TRUE(admins.ok());
  EXPECT_EQ(CallAs(kNobody, kNogroup, {admins.gid()}, "qube.list", json::object()), "ok")
      << "the group is looked up per connection, not once at start";

  for (const char* source_text : {"dir:/root", "host"}) {
    std::string source = source_text;
    for (bool dry_run : {true, false}) {
      CallOutcome refused = CallAsWithMessage(kNobody, kNogroup, {admins.gid()}, "system.apply",
                                              ApplyParams(DescriptionWithSource(source), dry_run));
      EXPECT_EQ(refused.code, "permission_denied") << source << " dry_run=" << dry_run;
      EXPECT_THAT(refused.message, HasSubstr("qube dt-hostsrc"));
      EXPECT_THAT(refused.message, HasSubstr("\"" + source + "\""));
      EXPECT_THAT(refused.message, HasSubstr("--allow-host-sources GROUP"));
    }
  }
  EXPECT_EQ(StateOf("dt-hostsrc"), "absent") << "nothing was applied";
  std::string audit = AuditText();
  EXPECT_THAT(audit, HasSubstr("\"method\":\"system.apply\""));
  EXPECT_THAT(audit, HasSubstr("\"result\":\"denied\""));
  EXPECT_THAT(audit, HasSubstr("makes tesserad read a host path"));
  // Members are otherwise served: the same change with a built-in source.
  EXPECT_EQ(CallAs(kNobody, kNogroup, {admins.gid()}, "system.apply",
                   ApplyParams(DescriptionWithSource("busybox"), true)),
            "ok");

  // Root may; once applied, a member's apply that keeps it is not refused.
  std::string file = root_ + "/hostsrc.toml";
  ASSERT_TRUE(WriteFileAtomic(file, std::string(kSystem) +
                                        "\n[qubes.dt-hostsrc]\nclass = \"template\"\n"
                                        "source = \"dir:/root\"\n"));
  CliResult applied = Cli({"apply", file, "--yes"});
  ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
  EXPECT_EQ(StateOf("dt-hostsrc"), "halted");
  EXPECT_EQ(CallAs(kNobody, kNogroup, {admins.gid()}, "system.apply",
                   ApplyParams(DescriptionWithSource("dir:/root"), true)),
            "ok");
  EXPECT_EQ(CallAs(kNobody, kNogroup, {admins.gid()}, "system.apply",
                   ApplyParams(DescriptionWithSource("dir:/etc"), true)),
            "permission_denied")
      << "pointing it elsewhere is a new host path";
}

TEST_F(DaemonTest, TheAllowHostSourcesGroupMayApplyHostSources) {
  TestGroup admins(UniqueGroupName("adm"));
  ASSERT_TRUE(admins.ok());
  std::string allowed_name = UniqueGroupName("src");
  StartDaemon({"--no-autostart", "--admin-group", UniqueGroupName("adm"), "--allow-host-sources",
               allowed_name});
  json params = ApplyParams(DescriptionWithSource("dir:/root"), true);
  CallOutcome before = CallAsWithMessage(kNobody, kNogroup, {admins.gid()}, "system.apply", params);
  EXPECT_EQ(before.code, "permission_denied");
  EXPECT_THAT(before.message, HasSubstr(allowed_name + ", does not exist"));

  TestGroup allowed(allowed_name);  // created after the daemon started
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(CallAs(kNobody, kNogroup, {admins.gid(), allowed.gid()}, "system.apply", params), "ok");
  CallOutcome admin_only =
      CallAsWithMessage(kNobody, kNogroup, {admins.gid()}, "system.apply", params);
  EXPECT_EQ(admin_only.code, "permission_denied");
  EXPECT_THAT(admin_only.message,
              HasSubstr("members of group " + allowed_name + " (--allow-host-sources)"));
}

TEST_F(DaemonTest, MissingGroupsAreLoggedAtStart) {
  StartDaemon({"--no-autostart", "--admin-group", "tessera-test-no-admins", "--allow-host-sources",
               "tessera-test-no-sources"});
  // The warnings are written before the socket listens, so they are there now.
  std::string log = ReadFile(root_ + "/daemon.log").value_or("");
  EXPECT_THAT(log, HasSubstr("level=warn"));
  EXPECT_THAT(log, HasSubstr("admin group does not exist"));
  EXPECT_THAT(log, HasSubstr("group=tessera-test-no-admins"));
  EXPECT_THAT(log, HasSubstr("group=tessera-test-no-sources"));
}

}  // namespace
}  // namespace tessera::daemon_testing
