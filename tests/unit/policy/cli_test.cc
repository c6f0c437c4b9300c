// `tessera policy check|eval|explain` end to end through the built binary.

#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

using ::testing::HasSubstr;
using nlohmann::json;

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class PolicyCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (std::filesystem::temp_directory_path() / "policy-cli-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    Write("etc/30-user.policy",
          "qubes.Filecopy * work vault deny notify=no\n"
          "qubes.Filecopy * @anyvm @anyvm ask default_target=personal\n"
          "qubes.OpenInVM * @anyvm @dispvm allow\n"
          "test.Echo +hi @tag:trusted @type:AppVM allow user=root\n");
    Write("system.json", R"({"qubes": {
      "work": {"type": "AppVM", "tags": ["trusted"], "uuid": "11111111-1111-1111-1111-111111111111",
               "default_dispvm": "dvm", "power_state": "Running"},
      "vault": {"type": "AppVM", "uuid": "22222222-2222-2222-2222-222222222222"},
      "personal": {"type": "AppVM", "uuid": "33333333-3333-3333-3333-333333333333"},
      "dvm": {"type": "AppVM", "template_for_dispvms": true,
              "uuid": "44444444-4444-4444-4444-444444444444"}}})");
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Write(const std::string& rel, const std::string& text) {
    auto p = std::filesystem::path(dir_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string Dirs() const {
    return " --policy-dir " + dir_ + "/etc --runtime-dir " + dir_ + "/run --compat-dir " + dir_ +
           "/legacy";
  }
  CliRun Tessera(const std::string& args) {
    const std::string err_file = dir_ + "/stderr";
    const std::string cmd = std::string(TESSERA_CLI) + " " + args + " 2>" + err_file;
    CliRun run;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return run;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) run.out.append(buf.data(), n);
    const int status = ::pclose(p);
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(err_file);
    run.err.assign(std::istreambuf_iterator<char>(in), {});
    return run;
  }
  json Eval(const std::string& request) {
    CliRun r = Tessera("policy eval" + Dirs() + " --system " + dir_ + "/system.json " + request);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  std::string dir_;
};

TEST_F(PolicyCli, CheckGoodPolicy) {
  CliRun r = Tessera("policy check" + Dirs());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST_F(PolicyCli, CheckListsEveryErrorAsFileLine) {
  Write("etc/40-bad.policy", "test.S * @anyvm\n\ntest.S * @anyvm @anyvm maybe\n!include nope\n");
  CliRun r = Tessera("policy check" + Dirs());
  EXPECT_EQ(r.exit_code, 1);
  const std::string file = dir_ + "/etc/40-bad.policy";
  EXPECT_THAT(r.err, HasSubstr(file + ":1: wrong number of fields\n"));
  EXPECT_THAT(r.err, HasSubstr(file + ":3: invalid action: maybe\n"));
  EXPECT_THAT(r.err, HasSubstr(file + ":4: not a file: "));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 3);
}

TEST_F(PolicyCli, EvalDecisions) {
  json j = Eval("qubes.Filecopy work vault");
  EXPECT_EQ(j["result"], "deny");
  EXPECT_EQ(j["notify"], false);
  EXPECT_EQ(j["rule"], json({{"file", "30-user.policy"}, {"line", 1}}));

  j = Eval("qubes.Filecopy work @default");
  EXPECT_EQ(j["result"], "ask");
  EXPECT_EQ(j["target"], nullptr);
  EXPECT_EQ(j["targets_for_ask"], json({"@dispvm:dvm", "dvm", "personal"}));
  EXPECT_EQ(j["default_target"], "personal");

  j = Eval("qubes.OpenInVM+x work @dispvm");
  EXPECT_EQ(j["result"], "allow");
  EXPECT_EQ(j["target"], "@dispvm:dvm");
  EXPECT_EQ(j["autostart"], true);

  j = Eval("test.Echo+hi work vault");
  EXPECT_EQ(j["result"], "allow");
  EXPECT_EQ(j["user"], "root");

  j = Eval("test.Echo+hi work work");  // loopback
  EXPECT_EQ(j["result"], "deny");

  j = Eval("no.Such work vault");
  EXPECT_EQ(j["result"], "deny");
  EXPECT_EQ(j["rule"], nullptr);
  EXPECT_EQ(j["reason"], "no matching rule found");
}

TEST_F(PolicyCli, EvalPrintsKeysInDocumentedOrder) {
  CliRun r = Tessera("policy eval" + Dirs() + " --system " + dir_ + "/system.json qubes.Filecopy work vault");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"result\":\"deny\",\"target\":null,\"targets_for_ask\":[],\"default_target\":null,"
            "\"user\":null,\"notify\":false,\"autostart\":false,"
            "\"rule\":{\"file\":\"30-user.policy\",\"line\":1},"
            "\"reason\":\"denied by policy 30-user.policy:1\"}\n");
}

TEST_F(PolicyCli, EvalNamesLegacyFilesRelativeToTheLegacyDir) {
  Write("etc/20-compat.policy", "!compat-4.0\n");
  Write("legacy/test.Svc+arg", "work vault allow\n");
  json j = Eval("test.Svc+arg work vault");
  EXPECT_EQ(j["result"], "allow");
  EXPECT_EQ(j["rule"], json({{"file", "test.Svc+arg"}, {"line", 1}}));
  EXPECT_EQ(j["reason"], "allowed by policy test.Svc+arg:1");
  j = Eval("test.Svc+arg vault work");  // the implicit deny after a SERVICE+ARG file
  EXPECT_EQ(j["result"], "deny");
  EXPECT_EQ(j["rule"], json({{"file", "test.Svc+arg"}, {"line", 0}}));
}

TEST_F(PolicyCli, PolicyDirComesFromTheSystemDescription) {
  Write("cfg/policy.d/30-x.policy", "test.S * work vault allow\n");
  Write("system.toml", "policy_dir = \"" + dir_ + "/cfg/policy.d\"\n"
        "[qubes.base]\nclass = \"template\"\nsource = \"busybox\"\n"
        "[qubes.work]\nclass = \"app\"\ntemplate = \"base\"\n"
        "[qubes.vault]\nclass = \"app\"\ntemplate = \"base\"\n");
  const std::string rest = " --runtime-dir " + dir_ + "/run test.S work vault";
  CliRun r = Tessera("--config " + dir_ + "/system.toml policy eval" + rest);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_EQ(j["result"], "allow") << r.out << r.err;
  EXPECT_EQ(j["rule"]["file"], "30-x.policy");
  // TESSERA_CONFIG names the description too (here for `check`).
  ::setenv("TESSERA_CONFIG", (dir_ + "/system.toml").c_str(), 1);
  r = Tessera("policy check --runtime-dir " + dir_ + "/run");
  ::unsetenv("TESSERA_CONFIG");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 rules from 1 files"));
  // An explicit --policy-dir wins over the description.
  r = Tessera("--config " + dir_ + "/system.toml policy eval" + Dirs() + " test.S work vault");
  EXPECT_EQ(json::parse(r.out, nullptr, false)["result"], "deny") << r.out;
  // An unusable description is a usage error when it is needed for the policy dir.
  Write("broken.toml", "policy_dir = 3\n");
  EXPECT_EQ(Tessera("--config " + dir_ + "/broken.toml policy check --runtime-dir " + dir_ + "/run")
                .exit_code, 2);
}

TEST_F(PolicyCli, EvalRuntimeDirWins) {
  Write("run/30-user.policy", "qubes.Filecopy * work vault allow\n");
  json j = Eval("qubes.Filecopy work vault");
  EXPECT_EQ(j["result"], "allow");
  EXPECT_EQ(j["rule"]["file"], "run:30-user.policy");
}

TEST_F(PolicyCli, EvalWithBrokenPolicyDeniesAndExitsZero) {
  Write("etc/10-broken.policy", "qubes.Filecopy * @anyvm @anyvm allow notify=maybe\n");
  json j = Eval("qubes.Filecopy work vault");
  EXPECT_EQ(j["result"], "deny");
  EXPECT_EQ(j["rule"], nullptr);
}

TEST_F(PolicyCli, UsageErrorsExitTwo) {
  EXPECT_EQ(Tessera("policy eval" + Dirs() + " --system " + dir_ + "/missing.json a b c").exit_code, 2);
  Write("bad.json", "{\"qubes\": {\"x\": {\"type\": \"Nope\"}}}");
  CliRun r = Tessera("policy eval" + Dirs() + " --system " + dir_ + "/bad.json a b c");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("qube 'x'"));
  EXPECT_EQ(Tessera("policy eval" + Dirs() + " --system " + dir_ + "/system.json a b").exit_code, 2);
  EXPECT_EQ(Tessera("policy frob").exit_code, 2);
}

TEST_F(PolicyCli, ExplainShowsRulesAndDecision) {
  CliRun r = Tessera("policy explain" + Dirs() + " --system " + dir_ + "/system.json qubes.Filecopy work vault");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("30-user.policy:1"));
  EXPECT_THAT(r.out, HasSubstr("MATCHES"));
  EXPECT_THAT(r.out, HasSubstr("decision: deny"));
  r = Tessera("policy explain" + Dirs() + " --system " + dir_ + "/system.json qubes.Filecopy vault work");
  EXPECT_THAT(r.out, HasSubstr("source 'vault' does not match 'work'"));
  EXPECT_THAT(r.out, HasSubstr("decision: ask"));
}

TEST_F(PolicyCli, ExplainPrintsStarAndWarnsAboutUnknownQubes) {
  Write("etc/20-any.policy", "* * @anyvm vualt deny\n");
  CliRun r = Tessera("policy explain" + Dirs() + " --system " + dir_ +
                     "/system.json qubes.Filecopy work persnal");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("20-any.policy:1: * * @anyvm vualt deny"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("None")));
  EXPECT_THAT(r.err, HasSubstr("warning: the request's target names qube 'persnal', which is not "
                               "in the system description"));
  EXPECT_THAT(r.err, HasSubstr("warning: rule 20-any.policy:1 names qube 'vualt'"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("'work'")));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("'vault'")));
  // Known names only: no warning at all.
  std::filesystem::remove(std::filesystem::path(dir_) / "etc/20-any.policy");
  r = Tessera("policy explain" + Dirs() + " --system " + dir_ +
              "/system.json test.Echo+hi work vault");
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("warning")));
}

TEST_F(PolicyCli, ExplainNamesTheRulesThatRemovedEveryAskCandidate) {
  Write("etc/10-ask.policy",
        "test.Ask * work @tag:secret deny\n"
        "test.Ask * work @anyvm ask\n");
  Write("ask.json", R"({"qubes": {
      "work": {"type": "AppVM", "uuid": "11111111-1111-1111-1111-111111111111"},
      "vault": {"type": "AppVM", "tags": ["secret"], "uuid": "22222222-2222-2222-2222-222222222222"},
      "bank": {"type": "AppVM", "tags": ["secret"], "uuid": "33333333-3333-3333-3333-333333333333"}}})");
  CliRun r =
      Tessera("policy explain" + Dirs() + " --system " + dir_ + "/ask.json test.Ask work @default");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("decision: deny"));
  EXPECT_THAT(r.out, HasSubstr("no target is available to choose from"));
  EXPECT_THAT(r.out, HasSubstr("candidate bank: removed by the deny rule 10-ask.policy:1\n"));
  EXPECT_THAT(r.out, HasSubstr("candidate vault: removed by the deny rule 10-ask.policy:1\n"));
}

TEST_F(PolicyCli, V4DollarSyntaxIsAnErrorNamingFileAndLine) {
  Write("etc/40-old.policy", "# old habits\nqubes.Filecopy * $anyvm @anyvm deny\n");
  CliRun r = Tessera("policy check" + Dirs());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("40-old.policy:2: '$anyvm' is Qubes policy v4 syntax; in a v5 "
                               "policy file write '@anyvm'"));
}

}  // namespace
