// The daemon verbs' output as scripts and users read it (issue 10): `ls`
// and `prefs` in JSON, `ls QUBE...`, `events` when the daemon goes away, and
// config paths recorded absolute. Real daemon (fixture: daemon_fixture.h).

#include <climits>

#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

// Every string anywhere in `v` (to find placeholders standing for "absent").
void CollectStrings(const json& v, std::vector<std::string>& out) {
  if (v.is_string()) out.push_back(v.get<std::string>());
  if (v.is_structured()) {
    for (const auto& item : v) CollectStrings(item, out);
  }
}

// Runs `fn` with the working directory `dir`, restoring it afterwards (the
// CLI children inherit it).
template <class Fn>
void InDirectory(const std::string& dir, Fn fn) {
  char old[PATH_MAX];
  ASSERT_NE(::getcwd(old, sizeof(old)), nullptr);
  ASSERT_EQ(::chdir(dir.c_str()), 0);
  fn();
  ASSERT_EQ(::chdir(old), 0);
}

TEST_F(DaemonTest, LsJsonUsesNullForAbsentValues) {
  StartDaemon({"--no-autostart"});
  CliResult r = Cli({"ls", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_array()) << r.out;
  ASSERT_FALSE(doc.empty());
  const std::vector<std::string> keys = {"name",      "state",  "since", "class",
                                         "template",  "netvm",  "label", "memory",
                                         "autostart", "reason", "pid",   "commands"};
  for (const auto& q : doc) {
    for (const auto& key : keys) EXPECT_TRUE(q.contains(key)) << key << " in " << q.dump();
    std::vector<std::string> strings;
    CollectStrings(q, strings);
    for (const auto& s : strings) {
      EXPECT_NE(s, "") << q.dump();
      EXPECT_NE(s, "-") << q.dump();
    }
  }
  json vault;
  for (const auto& q : doc) {
    if (q["name"] == "dt-vault") vault = q;
  }
  ASSERT_TRUE(vault.is_object()) << r.out;
  EXPECT_EQ(vault["state"], "halted");
  EXPECT_TRUE(vault["netvm"].is_null()) << vault.dump();  // netvm = "none"
  EXPECT_TRUE(vault["pid"].is_null()) << vault.dump();
  EXPECT_TRUE(vault["reason"].is_null()) << vault.dump();
  EXPECT_EQ(vault["memory"], 256);
}

TEST_F(DaemonTest, LsListsOnlyTheNamedQubesAndRefusesUnknownNames) {
  StartDaemon({"--no-autostart"});
  CliResult two = Cli({"ls", "--json", "dt-work", "dt-vault"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  json doc = json::parse(two.out, nullptr, false);
  ASSERT_TRUE(doc.is_array()) << two.out;
  ASSERT_EQ(doc.size(), 2u) << two.out;
  EXPECT_EQ(doc[0]["name"], "dt-work");
  EXPECT_EQ(doc[1]["name"], "dt-vault");

  CliResult table = Cli({"ls", "dt-vault"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("dt-vault"));
  EXPECT_THAT(table.out, ::testing::Not(HasSubstr("dt-work")));

  CliResult unknown = Cli({"ls", "dt-work", "dt-wrok"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, "tessera ls: no qube named 'dt-wrok' (did you mean 'dt-work'?)\n");
  CliResult far = Cli({"ls", "zzzzzzzz"});
  EXPECT_EQ(far.exit_code, 1);
  EXPECT_EQ(far.err, "tessera ls: no qube named 'zzzzzzzz'\n");
  EXPECT_EQ(far.out, "NAME  CLASS  STATE  TEMPLATE  NETVM  LABEL  MEMORY\n");
  EXPECT_THAT(unknown.out, HasSubstr("dt-work"));  // the known ones are still listed
}

TEST_F(DaemonTest, PrefsJsonIsTheDaemonsAnswer) {
  StartDaemon({"--no-autostart"});
  CliResult all = Cli({"prefs", "dt-work", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  json doc = json::parse(all.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << all.out;
  EXPECT_EQ(doc["name"], "dt-work");
  EXPECT_EQ(doc["memory"], 512);
  EXPECT_EQ(doc["template"], "dt-base");
  EXPECT_EQ(doc["default_dispvm"], "dt-dvm");  // the system default, resolved

  CliResult one = Cli({"prefs", "dt-work", "memory", "--json"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(json::parse(one.out, nullptr, false), (json{{"memory", 512}})) << one.out;

  CliResult missing = Cli({"prefs", "nope", "--json"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.out, "");
}

// A follower that stops following because the daemon is gone has failed:
// non-zero, with a message, whether the daemon stopped or was killed.
TEST_F(DaemonTest, EventsFailsWhenTheDaemonGoesAway) {
  for (int sig : {SIGTERM, SIGKILL}) {
    StartDaemon({"--no-autostart"});
    // The subscription is served once the daemon audits it (the audit log
    // is kept across the daemon's restarts: count them).
    auto subscriptions = [&] {
      std::string text = AuditText();
      size_t count = 0;
      for (size_t at = 0; (at = text.find("events.subscribe", at)) != std::string::npos; ++at) {
        ++count;
      }
      return count;
    };
    const size_t before = subscriptions();
    int err[2];
    ASSERT_EQ(::pipe2(err, O_CLOEXEC), 0);
    pid_t events = ::fork();
    ASSERT_GE(events, 0);
    if (events == 0) {
      int null_fd = ::open("/dev/null", O_RDWR);
      ExecCli({"events"}, null_fd, null_fd, err[1]);
    }
    ::close(err[1]);
    for (int i = 0; i < 250 && subscriptions() == before; ++i) std::this_thread::sleep_for(20ms);
    ASSERT_GT(subscriptions(), before) << "`tessera events` never subscribed";
    KillDaemon(sig);
    int status = 0;
    pid_t done = -1;
    for (int i = 0; i < 500 && done != events; ++i) {
      done = ::waitpid(events, &status, WNOHANG);
      if (done != events) std::this_thread::sleep_for(20ms);
    }
    if (done != events) {
      ::kill(events, SIGKILL);
      ::waitpid(events, &status, 0);
      ADD_FAILURE() << "`tessera events` kept running after the daemon got signal " << sig;
    }
    std::string text = ReadAllFd(err[0]);
    ::close(err[0]);
    EXPECT_TRUE(WIFEXITED(status)) << sig;
    EXPECT_EQ(WEXITSTATUS(status), 1) << sig << ": " << text;
    EXPECT_THAT(text, HasSubstr("tessera events: ")) << sig;
    EXPECT_EQ(text.back(), '\n') << sig;
  }
}

TEST_F(DaemonTest, RelativeConfigPathsAreRecordedAbsolute) {
  // The daemon started as `tessera --config system.toml daemon` from root_.
  const std::string absolute = config_;
  config_ = "system.toml";
  InDirectory(root_, [&] { StartDaemon({"--no-autostart"}); });
  config_ = absolute;
  auto client = wire::AdminClient::Connect(layout_.runtime_dir + "/admin.sock");
  ASSERT_TRUE(client);
  auto info = client->Call("daemon.info", json::object());
  ASSERT_TRUE(info && info->ok);
  EXPECT_EQ(info->result.value("description", ""), root_ + "/system.toml");

  // `tessera apply ./next.toml` from root_: the applied source is absolute.
  std::string next_text = kSystem;
  next_text.replace(next_text.find("label = \"blue\""), 14, "label = \"green\"");
  ASSERT_TRUE(WriteFileAtomic(root_ + "/next.toml", next_text));
  CliResult applied;
  InDirectory(root_, [&] { applied = Cli({"apply", "./next.toml", "--yes"}); });
  ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("./next.toml"));  // messages keep what was typed
  auto system = client->Call("system.get", json::object());
  ASSERT_TRUE(system && system->ok);
  EXPECT_EQ(system->result.value("source", ""), root_ + "/next.toml");
}

}  // namespace
}  // namespace tessera::daemon_testing
