// Loaders and validation on valid and invalid input: every error class, with
// the location each one is reported at.

#include "config/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/fs.h"
#include "config/values.h"
#include "config_test_util.h"

namespace tessera::config {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using testing::DiagAt;
using testing::DiagPath;
using testing::Dump;
using testing::kBase;
using testing::LoadJson;
using testing::LoadToml;
using testing::SourcePath;

TEST(LoaderTest, ExampleTomlLoadsWithDefaultsFilledIn) {
  LoadOutcome outcome = LoadSystem(SourcePath("examples/system.toml"));
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  EXPECT_THAT(outcome.diagnostics, IsEmpty());
  const System& system = *outcome.system;
  ASSERT_THAT(system.qubes, SizeIs(7));
  // Sorted by name.
  EXPECT_EQ(system.qubes.front().name, "base");
  EXPECT_EQ(system.qubes.back().name, "work");
  EXPECT_EQ(system.policy_dir, "/etc/tessera/policy.d");
  EXPECT_EQ(system.default_dispvm, "default-dvm");

  const Qube* base = system.Find("base");
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(base->klass, QubeClass::kTemplate);
  EXPECT_EQ(base->template_source, "busybox");
  EXPECT_EQ(base->template_name, std::nullopt);
  EXPECT_EQ(base->uuid, DeriveUuid("base"));

  const Qube* work = system.Find("work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->klass, QubeClass::kApp);
  EXPECT_EQ(work->template_name, "base");
  EXPECT_EQ(work->netvm, "sys-firewall");
  EXPECT_EQ(work->label, "blue");
  EXPECT_EQ(work->memory_mib, 2048u);
  EXPECT_EQ(work->cpus, 2u);
  EXPECT_EQ(work->tags, std::vector<std::string>{"work"});
  EXPECT_EQ(work->default_dispvm, "default-dvm");  // inherited from the system
  EXPECT_EQ(work->features.at("gui"), "1");
  EXPECT_EQ(work->template_source, "");
  ASSERT_THAT(work->firewall, SizeIs(4));
  EXPECT_TRUE(work->firewall[0].specialtarget_dns);
  EXPECT_EQ(work->firewall[1].dsthost, "10.0.0.0/8");
  EXPECT_EQ(work->firewall[1].proto, FirewallProto::kTcp);
  EXPECT_EQ(work->firewall[1].dstports, (PortRange{443, 443}));
  EXPECT_EQ(work->firewall[2].icmptype, 8);
  EXPECT_EQ(work->firewall[3].action, FirewallAction::kDrop);

  const Qube* vault = system.Find("vault");
  ASSERT_NE(vault, nullptr);
  EXPECT_EQ(vault->netvm, std::nullopt);
  EXPECT_EQ(vault->default_dispvm, std::nullopt);  // explicit "none"
  EXPECT_FALSE(vault->provides_network);

  const Qube* sys_net = system.Find("sys-net");
  ASSERT_NE(sys_net, nullptr);
  EXPECT_TRUE(sys_net->provides_network);
  EXPECT_TRUE(sys_net->autostart);

  const Qube* dvm = system.Find("default-dvm");
  ASSERT_NE(dvm, nullptr);
  EXPECT_EQ(dvm->klass, QubeClass::kDisposableTemplate);
  EXPECT_EQ(dvm->idle_timeout, 600u);
  EXPECT_EQ(dvm->memory_mib, 1024u);  // default
  EXPECT_EQ(dvm->label, "red");
  EXPECT_EQ(dvm->cpus, 1u);
  EXPECT_EQ(dvm->backend, Backend::kCell);
}

TEST(LoaderTest, BuiltinExampleIsTheExampleFile) {
  Result<std::string> file = ReadFile(SourcePath("examples/system.toml"));
  ASSERT_TRUE(file);
  EXPECT_EQ(BuiltinExampleToml(), *file);
  LoadOutcome builtin = LoadSystem(std::string(kBuiltinExampleName));
  ASSERT_TRUE(builtin.system) << Dump(builtin.diagnostics);
  EXPECT_EQ(*builtin.system, *LoadSystem(SourcePath("examples/system.toml")).system);
}

TEST(LoaderTest, MinimalDocumentsAndDefaults) {
  LoadOutcome empty = LoadToml("");
  ASSERT_TRUE(empty.system) << Dump(empty.diagnostics);
  EXPECT_THAT(empty.system->qubes, IsEmpty());
  EXPECT_EQ(empty.system->policy_dir, "/etc/tessera/policy.d");
  EXPECT_EQ(empty.system->default_dispvm, std::nullopt);

  LoadOutcome one = LoadToml("[qubes.solo]\nclass = \"standalone\"\n");
  ASSERT_TRUE(one.system) << Dump(one.diagnostics);
  const Qube& solo = one.system->qubes.at(0);
  EXPECT_EQ(solo.memory_mib, 1024u);
  EXPECT_EQ(solo.cpus, 1u);
  EXPECT_EQ(solo.label, "red");
  EXPECT_EQ(solo.netvm, std::nullopt);
  EXPECT_FALSE(solo.provides_network);
  EXPECT_FALSE(solo.autostart);
  EXPECT_EQ(solo.backend, Backend::kCell);
  EXPECT_EQ(solo.uuid, DeriveUuid("solo"));
  EXPECT_EQ(solo.default_user, "user");
  EXPECT_EQ(solo.private_size_mib, 2048u);  // as Qubes
}

TEST(LoaderTest, PrivateSizeIsMiBOrASizeWithAUnit) {
  auto size_of = [](const std::string& value) -> std::optional<uint64_t> {
    LoadOutcome o =
        LoadToml("[qubes.solo]\nclass = \"standalone\"\nprivate_size = " + value + "\n");
    if (!o.system) return std::nullopt;
    return o.system->qubes.at(0).private_size_mib;
  };
  EXPECT_EQ(size_of("4096"), 4096u);
  EXPECT_EQ(size_of("\"20G\""), 20480u);
  EXPECT_EQ(size_of("\"512MiB\""), 512u);
  EXPECT_EQ(size_of("\"1TiB\""), 1048576u);
  EXPECT_EQ(size_of("\"32m\""), 32u);
  EXPECT_EQ(size_of("\"16T\""), 16777216u);
  for (const char* bad :
       {"16", "-5", "\"2.5G\"", "\"20X\"", "\"G\"", "\"17T\"", "true", "99999999999999999999"}) {
    EXPECT_EQ(size_of(bad), std::nullopt) << bad;
  }
  LoadOutcome small = LoadToml("[qubes.solo]\nclass = \"standalone\"\nprivate_size = \"16M\"\n");
  EXPECT_THAT(small.diagnostics, ElementsAre(DiagAt(3, 16, "qubes.solo.private_size",
                                                    "between 32 MiB and 16 TiB, got 16 MiB")));
  LoadOutcome unit = LoadToml("[qubes.solo]\nclass = \"standalone\"\nprivate_size = \"2 GB\"\n");
  EXPECT_THAT(unit.diagnostics,
              ElementsAre(DiagAt(3, 16, "qubes.solo.private_size", "expected a size like \"2G\"")));
  // JSON gives the same, and the written JSON reads back to it.
  LoadOutcome json =
      LoadJson(R"({"qubes": {"solo": {"class": "standalone", "private_size": "3G"}}})");
  ASSERT_TRUE(json.system) << Dump(json.diagnostics);
  EXPECT_EQ(json.system->qubes.at(0).private_size_mib, 3072u);
  LoadOutcome again = LoadJson(ToJson(*json.system));
  ASSERT_TRUE(again.system) << Dump(again.diagnostics);
  EXPECT_EQ(again.system->qubes.at(0).private_size_mib, 3072u);
}

TEST(LoaderTest, DefaultUserIsANameOrIds) {
  LoadOutcome root = LoadToml("[qubes.solo]\nclass = \"standalone\"\ndefault_user = \"root\"\n");
  ASSERT_TRUE(root.system) << Dump(root.diagnostics);
  EXPECT_EQ(root.system->qubes.at(0).default_user, "root");
  LoadOutcome bad = LoadToml("[qubes.solo]\nclass = \"standalone\"\ndefault_user = \"Bad User\"\n");
  EXPECT_FALSE(bad.system);
  EXPECT_THAT(bad.diagnostics, ElementsAre(DiagAt(3, 16, "qubes.solo.default_user",
                                                  "default_user must be a user name")));
}

TEST(LoaderTest, ClassDefaultsToApp) {
  LoadOutcome outcome = LoadToml(std::string(kBase) + "[qubes.w]\ntemplate = \"base\"\n");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  EXPECT_EQ(outcome.system->Find("w")->klass, QubeClass::kApp);
}

TEST(LoaderTest, ReportsEveryErrorOfTheInvalidSampleInOneRun) {
  LoadOutcome outcome = LoadSystem(SourcePath("tests/unit/config/data/invalid.toml"));
  EXPECT_FALSE(outcome.system);
  EXPECT_THAT(
      outcome.diagnostics,
      ElementsAre(
          DiagAt(2, 18, "default_dispvm", "must name a disposable-template"),
          DiagAt(3, 1, "polcy_dir", "unknown key 'polcy_dir'; did you mean 'policy_dir'?"),
          DiagAt(7, 10, "qubes.base.source", "invalid source 'floppy'"),
          DiagAt(11, 12, "qubes.work.template", "no qube named 'bsae'; did you mean 'base'?"),
          DiagAt(12, 9, "qubes.work.netvm", "'vault' does not provide network"),
          DiagAt(13, 9, "qubes.work.label", "invalid value 'pink'"),
          DiagAt(14, 10, "qubes.work.memory", "16 is out of range (expected 32..1048576 MiB)"),
          DiagAt(15, 8, "qubes.work.cpus", "expected an integer, got string"),
          DiagAt(17, 1, "qubes.work.firewall[0].action", "missing action"),
          DiagAt(18, 11, "qubes.work.firewall[0].dsthost", "did you mean 10.0.0.0/8?"),
          DiagAt(20, 12, "qubes.work.firewall[0].icmptype", "icmptype needs proto = \"icmp\""),
          DiagAt(25, 15, "qubes.vault.tags[1]", "tag 'not ok'"),
          DiagAt(27, 8, "qubes.disp12", "reserved"),
          DiagAt(29, 12, "qubes.disp12.template",
                 "the template of a disposable qube must be a disposable-template qube")))
      << Dump(outcome.diagnostics);
  // The file name leads every line.
  EXPECT_EQ(outcome.diagnostics[0].ToString(),
            SourcePath("tests/unit/config/data/invalid.toml") +
                ":2:18: default_dispvm: 'work' is an app qube; default_dispvm must name a "
                "disposable-template qube");
}

TEST(ValidationTest, NixTemplatesNameAStoreRootAndAClosure) {
  const std::string root = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-env";
  LoadOutcome ok = LoadToml("[qubes.t]\nclass = \"template\"\nsource = \"nix\"\nnix = { root = \"" +
                            root + "\", closure = \"/nix/store/x/store-paths\" }\n");
  ASSERT_TRUE(ok.system) << Dump(ok.diagnostics);
  const Qube* t = ok.system->Find("t");
  ASSERT_NE(t->nix, std::nullopt);
  EXPECT_EQ(t->template_source, "nix");
  EXPECT_EQ(t->nix->root, root);
  EXPECT_EQ(t->nix->image, "erofs");
  // The normalised JSON carries it and loads back the same.
  LoadOutcome again = LoadJson(ToJson(*ok.system));
  ASSERT_TRUE(again.system) << Dump(again.diagnostics);
  EXPECT_EQ(*again.system, *ok.system);

  LoadOutcome bad = LoadToml(
      "[qubes.a]\nclass = \"template\"\nsource = \"nix\"\n"  // 1-3
      "[qubes.b]\nclass = \"template\"\nsource = \"nix\"\n"  // 4-6
      "nix = { root = \"/nix/store/short-env\", closure = \"rel\", image = \"zip\", x = 1 }\n"  // 7
      "[qubes.c]\nclass = \"template\"\nnix = { root = \"" +
      root +  // 8-10
      "\", closure = \"/c\" }\n"
      "[qubes.d]\nclass = \"template\"\nsource = \"nix\"\nnix = { image = \"none\" }\n"  // 11-14
      "[qubes.s]\nclass = \"standalone\"\ntemplate = \"a\"\n");                          // 15-17
  EXPECT_FALSE(bad.system);
  EXPECT_THAT(bad.diagnostics,
              ElementsAre(DiagAt(3, 10, "qubes.a.source", "needs the nix table"),
                          DiagAt(7, 16, "qubes.b.nix.root", "expected a store path"),
                          DiagAt(7, 50, "qubes.b.nix.closure", "absolute path"),
                          DiagAt(7, 65, "qubes.b.nix.image", "invalid value 'zip'"),
                          DiagAt(7, 72, "qubes.b.nix", "unknown key 'x'"),
                          DiagAt(10, 7, "qubes.c.nix", "only to a template with source = \"nix\""),
                          DiagAt(14, 7, "qubes.d.nix", "root is required"),
                          DiagAt(14, 7, "qubes.d.nix", "closure is required"),
                          DiagAt(17, 12, "qubes.s.template", "a standalone qube cannot be copied")))
      << Dump(bad.diagnostics);
}

TEST(ValidationTest, CredentialsAreFileNamesToAbsoluteHostPaths) {
  LoadOutcome ok =
      LoadToml(std::string(kBase) +
               "[qubes.w]\ntemplate = \"base\"\n"
               "credentials = { git-token = \"/run/agenix/t\", \"ssh.key\" = \"/k\" }\n");
  ASSERT_TRUE(ok.system) << Dump(ok.diagnostics);
  EXPECT_EQ(
      ok.system->Find("w")->credentials,
      (std::map<std::string, std::string>{{"git-token", "/run/agenix/t"}, {"ssh.key", "/k"}}));
  LoadOutcome again = LoadJson(ToJson(*ok.system));
  ASSERT_TRUE(again.system) << Dump(again.diagnostics);
  EXPECT_EQ(*again.system, *ok.system);

  LoadOutcome bad = LoadToml(std::string(kBase) +
                             "[qubes.w]\ntemplate = \"base\"\n"                             // 7-8
                             "credentials = { \"../x\" = \"/a\", t = \"rel\", u = 1 }\n");  // 9
  EXPECT_FALSE(bad.system);
  EXPECT_THAT(bad.diagnostics,
              ElementsAre(DiagAt(9, 17, "qubes.w.credentials.\"../x\"", "expected a file name"),
                          DiagPath("qubes.w.credentials.t", "absolute path of a host file"),
                          DiagPath("qubes.w.credentials.u", "expected a string")))
      << Dump(bad.diagnostics);
}

TEST(ValidationTest, UnknownKeysAtEveryLevelWithHints) {
  LoadOutcome outcome = LoadToml(std::string(kBase) +
                                 "[qubes.w]\n"            // line 7
                                 "template = \"base\"\n"  // 8
                                 "netwm = \"net\"\n"      // 9
                                 "colour = \"red\"\n"     // 10
                                 "[[qubes.w.firewall]]\n" // 11
                                 "action = \"drop\"\n"    // 12
                                 "dstport = \"22\"\n");   // 13
  EXPECT_FALSE(outcome.system);
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(9, 1, "qubes.w.netwm", "did you mean 'netvm'?"),
                          DiagAt(10, 1, "qubes.w.colour", "unknown key 'colour'"),
                          DiagAt(13, 1, "qubes.w.firewall[0].dstport",
                                 "did you mean 'dstports'?")))
      << Dump(outcome.diagnostics);
  EXPECT_EQ(outcome.diagnostics[1].message.find("did you mean"), std::string::npos);
}

TEST(ValidationTest, NameSyntaxAndReservedNames) {
  LoadOutcome outcome = LoadToml(
      "[qubes.1abc]\nclass = \"standalone\"\n"                           // 1
      "[qubes.none]\nclass = \"standalone\"\n"                           // 3
      "[qubes.\"with space\"]\nclass = \"standalone\"\n"                 // 5
      "[qubes.abcdefghijklmnopqrstuvwxyz012345]\nclass = \"standalone\"\n"  // 7
      "[qubes.dom0]\nclass = \"standalone\"\n");                          // 9
  EXPECT_FALSE(outcome.system);
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(1, 8, "qubes.1abc", "must start with a letter"),
                          DiagAt(3, 8, "qubes.none", "reserved"),
                          DiagAt(5, 8, "qubes.\"with space\"", "may contain only"),
                          DiagAt(7, 8, "qubes.abcdefghijklmnopqrstuvwxyz012345", "31"),
                          DiagAt(9, 8, "qubes.dom0", "reserved")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, DuplicateNamesInJson) {
  LoadOutcome outcome = LoadJson(
      "{\"qubes\": {\n"
      "  \"a\": {\"class\": \"standalone\"},\n"
      "  \"a\": {\"class\": \"template\"}\n"
      "}}\n");
  EXPECT_FALSE(outcome.system);
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(3, 3, "qubes.a", "duplicate key 'a' (first defined at line 2)")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, DuplicateKeysInsideAQubeInJson) {
  LoadOutcome outcome =
      LoadJson("{\"qubes\": {\"a\": {\"class\": \"standalone\", \"cpus\": 1, \"cpus\": 2}}}");
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(1, 52, "qubes.a.cpus", "duplicate key 'cpus'")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, TomlSyntaxErrorsCarryTheLocation) {
  LoadOutcome duplicate = LoadToml("[qubes.a]\nclass = \"app\"\nclass = \"template\"\n");
  EXPECT_FALSE(duplicate.system);
  ASSERT_THAT(duplicate.diagnostics, SizeIs(1));
  EXPECT_EQ(duplicate.diagnostics[0].line, 3);
  EXPECT_THAT(duplicate.diagnostics[0].message, ::testing::HasSubstr("TOML syntax error"));

  LoadOutcome broken = LoadToml("[qubes.a]\nmemory = = 5\n");
  ASSERT_THAT(broken.diagnostics, SizeIs(1));
  EXPECT_EQ(broken.diagnostics[0].line, 2);
  EXPECT_GT(broken.diagnostics[0].column, 0);
}

TEST(ValidationTest, JsonSyntaxErrorsCarryTheLocation) {
  LoadOutcome outcome = LoadJson("{\n  \"qubes\": {\n    \"a\": [1, 2,]\n  }\n}\n");
  EXPECT_FALSE(outcome.system);
  ASSERT_THAT(outcome.diagnostics, SizeIs(1));
  EXPECT_EQ(outcome.diagnostics[0].line, 3);
  EXPECT_EQ(outcome.diagnostics[0].column, 16);
  EXPECT_THAT(outcome.diagnostics[0].message, ::testing::HasSubstr("JSON syntax error"));

  EXPECT_THAT(LoadJson("").diagnostics, SizeIs(1));
  EXPECT_THAT(LoadJson("{} {}").diagnostics, SizeIs(1));
  EXPECT_THAT(LoadJson("[1]").diagnostics,
              ElementsAre(DiagAt(1, 1, "", "expected the document, got array")));
}

TEST(ValidationTest, JsonValuePositionsAreExact) {
  LoadOutcome outcome = LoadJson(
      "{\"qubes\": {\"a\": {\"class\": \"standalone\",\n"
      "   \"memory\":    12,  \"label\": \"pinky\", \"autostart\": \"yes\",\n"
      "\t\"tags\": [\"x\", 5, \"y z\"], \"cpus\": -1e3, \"uuid\": \"nope\"}}}\n");
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(2, 17, "qubes.a.memory", "out of range"),
                          DiagAt(2, 31, "qubes.a.label", "invalid value 'pinky'"),
                          DiagAt(2, 53, "qubes.a.autostart", "expected a boolean"),
                          DiagAt(3, 16, "qubes.a.tags[1]", "expected a string, got integer"),
                          DiagAt(3, 19, "qubes.a.tags[2]", "tag 'y z'"),
                          DiagAt(3, 35, "qubes.a.cpus", "expected an integer, got float"),
                          DiagAt(3, 49, "qubes.a.uuid", "invalid uuid")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, JsonPositionsSurviveAByteOrderMark) {
  LoadOutcome outcome = LoadJson("\xEF\xBB\xBF{\"qubes\": {\"a\": {\"class\": \"standalone\", \"cpus\": 0}}}");
  EXPECT_THAT(outcome.diagnostics, ElementsAre(DiagAt(1, 52, "qubes.a.cpus", "out of range")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, JsonNullMeansNotSet) {
  LoadOutcome outcome = LoadJson(
      "{\"default_dispvm\": null, \"qubes\": {\"a\": {\"class\": \"standalone\", \"netvm\": null,"
      " \"memory\": null}}}");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  EXPECT_EQ(outcome.system->qubes[0].memory_mib, 1024u);
  EXPECT_EQ(outcome.system->qubes[0].netvm, std::nullopt);
}

TEST(ValidationTest, HugeJsonNumbersAreOutOfRange) {
  LoadOutcome outcome = LoadJson(
      "{\"qubes\": {\"a\": {\"class\": \"standalone\", \"memory\": 18446744073709551615}}}");
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagPath("qubes.a.memory", "out of range")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, MissingAndDanglingReferences) {
  LoadOutcome outcome = LoadToml(std::string(kBase) +
                                 "default_dispvm = \"dvm\"\n"  // line 7 (top-level, see below)
                                 "[qubes.w]\n"                 // 8
                                 "class = \"app\"\n"           // 9
                                 "netvm = \"nett\"\n"          // 10
                                 "default_dispvm = \"nobody\"\n");  // 11
  // kBase ends inside [qubes.net], so line 7's key belongs to that qube.
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(7, 18, "qubes.net.default_dispvm", "no qube named 'dvm'"),
                          DiagAt(8, 8, "qubes.w.template", "missing template"),
                          DiagAt(10, 9, "qubes.w.netvm", "no qube named 'nett'; did you mean 'net'?"),
                          DiagAt(11, 18, "qubes.w.default_dispvm", "no qube named 'nobody'")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, ClassRules) {
  LoadOutcome outcome = LoadToml(
      "[qubes.t]\nclass = \"template\"\ntemplate = \"t2\"\n"            // 1-3
      "[qubes.t2]\nclass = \"template\"\n"                               // 4-5
      "[qubes.s]\nclass = \"standalone\"\ntemplate = \"i\"\n"            // 6-8
      "[qubes.app]\nclass = \"app\"\ntemplate = \"s\"\nsource = \"host\"\n"  // 9-12
      "[qubes.dvm]\nclass = \"disposable-template\"\ntemplate = \"app\"\n"  // 13-15
      "[qubes.d]\nclass = \"disposable\"\ntemplate = \"t\"\n"            // 16-18
      "[qubes.d2]\nclass = \"disposable\"\n"                             // 19-20
      "[qubes.i]\nclass = \"app\"\ntemplate = \"t\"\nidle_timeout = 5\n"  // 21-24
      "[qubes.k]\nclass = \"sandwich\"\n");                              // 25-26
  EXPECT_THAT(
      outcome.diagnostics,
      ElementsAre(
          DiagAt(3, 12, "qubes.t.template", "a template qube has no template"),
          DiagAt(8, 12, "qubes.s.template",
                 "'i' is an app qube; the template of a standalone qube must be a template qube"),
          DiagAt(11, 12, "qubes.app.template",
                 "'s' is a standalone qube; the template of an app qube must be a template qube"),
          DiagAt(12, 10, "qubes.app.source", "source applies only to template qubes"),
          DiagAt(15, 12, "qubes.dvm.template", "'app' is an app qube"),
          DiagAt(18, 12, "qubes.d.template", "must be a disposable-template qube"),
          DiagAt(19, 8, "qubes.d2.template", "missing template"),
          DiagAt(24, 16, "qubes.i.idle_timeout", "applies only to disposable"),
          DiagAt(26, 9, "qubes.k.class", "invalid value 'sandwich'")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, StandaloneMayNameTheTemplateItIsCopiedFrom) {
  LoadOutcome outcome = LoadToml(
      "[qubes.t]\nclass = \"template\"\n"
      "[qubes.s]\nclass = \"standalone\"\ntemplate = \"t\"\n"
      "[qubes.bare]\nclass = \"standalone\"\n");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  EXPECT_EQ(outcome.system->Find("s")->template_name, std::optional<std::string>("t"));
  EXPECT_FALSE(outcome.system->Find("bare")->template_name);
}

TEST(ValidationTest, NetvmRules) {
  LoadOutcome outcome = LoadToml(
      "[qubes.a]\nclass = \"standalone\"\nprovides_network = true\nnetvm = \"b\"\n"  // 1-4
      "[qubes.b]\nclass = \"standalone\"\nprovides_network = true\nnetvm = \"c\"\n"  // 5-8
      "[qubes.c]\nclass = \"standalone\"\nprovides_network = true\nnetvm = \"a\"\n"  // 9-12
      "[qubes.self]\nclass = \"standalone\"\nprovides_network = true\nnetvm = \"self\"\n"  // 13-16
      "[qubes.plain]\nclass = \"standalone\"\n"                                        // 17-18
      "[qubes.user]\nclass = \"standalone\"\nnetvm = \"plain\"\n");                   // 19-21
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(4, 9, "qubes.a.netvm", "netvm cycle: a -> b -> c -> a"),
                          DiagAt(16, 9, "qubes.self.netvm", "cannot be its own netvm"),
                          DiagAt(21, 9, "qubes.user.netvm", "'plain' does not provide network")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, UplinkAndNetworkRange) {
  LoadOutcome good = LoadToml(
      "network_range = \"10.200.0.0/16\"\n"
      "[qubes.net]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"enp3s0\"\n"
      "uplink_address = \"192.0.2.2/24\"\nuplink_gateway = \"192.0.2.1\"\n"
      "uplink_dns = [\"192.0.2.53\"]\n");
  ASSERT_TRUE(good.system) << Dump(good.diagnostics);
  EXPECT_EQ(good.system->network_range, "10.200.0.0/16");
  const config::Qube* net = good.system->Find("net");
  EXPECT_EQ(net->uplink, "enp3s0");
  EXPECT_EQ(net->uplink_address, "192.0.2.2/24");
  EXPECT_EQ(net->uplink_gateway, "192.0.2.1");
  EXPECT_EQ(net->uplink_dns, std::vector<std::string>{"192.0.2.53"});
  EXPECT_EQ(LoadToml("[qubes.a]\nclass = \"standalone\"\n").system->network_range, "10.137.0.0/16");

  LoadOutcome bad = LoadToml(
      "network_range = \"10.137.0.1/16\"\n"                                              // 1
      "[qubes.a]\nclass = \"standalone\"\nuplink = \"eth0\"\n"                           // 2-4
      "[qubes.b]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"a/b\"\n"   // 5-8
      "[qubes.c]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth1\"\n"  // 9-12
      "[qubes.d]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth1\"\n"  // 13-16
      "uplink_address = \"192.0.2.3\"\nuplink_gateway = \"300.1.1.1\"\n"                 // 17-18
      "uplink_dns = [\"x\"]\n"                                                           // 19
      "[qubes.e]\nclass = \"standalone\"\nprovides_network = true\nnetvm = \"c\"\n"      // 20-23
      "uplink = \"eth2\"\nuplink_address = \"192.0.2.4/24\"\n"                           // 24-25
      "[qubes.f]\nclass = \"standalone\"\nprovides_network = true\n"                     // 26-28
      "uplink_gateway = \"192.0.2.1\"\n");                                               // 29
  EXPECT_THAT(
      bad.diagnostics,
      ElementsAre(DiagAt(1, 17, "network_range", "has host bits set"),
                  DiagAt(4, 10, "qubes.a.uplink", "only to a qube with provides_network"),
                  DiagAt(8, 10, "qubes.b.uplink", "invalid interface name 'a/b'"),
                  DiagAt(16, 10, "qubes.d.uplink", "already the uplink of 'c'"),
                  DiagAt(17, 18, "qubes.d.uplink_address", "expected A.B.C.D/N"),
                  DiagAt(18, 18, "qubes.d.uplink_gateway", "invalid IPv4 address '300.1.1.1'"),
                  DiagAt(19, 15, "qubes.d.uplink_dns[0]", "invalid IPv4 address 'x'"),
                  DiagAt(24, 10, "qubes.e.uplink", "without a netvm"),
                  DiagAt(29, 18, "qubes.f.uplink_gateway", "needs uplink")))
      << Dump(bad.diagnostics);
  LoadOutcome shared = LoadToml(
      "[qubes.a]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth0\"\n"
      "uplink_address = \"192.0.2.2/24\"\n"
      "[qubes.b]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth0\"\n"
      "uplink_address = \"192.0.2.3/24\"\n");
  EXPECT_THAT(shared.diagnostics,
              ElementsAre(DiagAt(9, 10, "qubes.b.uplink", "already the uplink of 'a'")))
      << Dump(shared.diagnostics);
  for (const char* reserved : {"10.139.0.0/16", "10.139.1.0/24", "10.139.2.0/24", "10.0.0.0/8"}) {
    EXPECT_THAT(LoadToml("network_range = \"" + std::string(reserved) + "\"\n").diagnostics,
                ElementsAre(DiagPath("network_range", "overlaps 10.139.0.0/16")))
        << reserved;
  }
  // DHCP (no uplink_address) and host-nat; neither takes a fixed gateway.
  LoadOutcome dynamic = LoadToml(
      "[qubes.a]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth0\"\n"
      "[qubes.b]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"host-nat\"\n"
      "[qubes.c]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"host-nat\"\n"
      "uplink_dns = [\"192.0.2.53\"]\n");
  ASSERT_TRUE(dynamic.system) << Dump(dynamic.diagnostics);
  EXPECT_EQ(dynamic.system->Find("a")->uplink_address, "");
  EXPECT_EQ(dynamic.system->Find("b")->uplink, config::kHostNat);
  EXPECT_THAT(
      LoadToml("[qubes.a]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"eth0\"\n"
               "uplink_gateway = \"192.0.2.1\"\n"
               "[qubes.b]\nclass = \"standalone\"\nprovides_network = true\n"
               "uplink = \"host-nat\"\nuplink_address = \"192.0.2.2/24\"\n")
          .diagnostics,
      ElementsAre(DiagAt(4, 10, "qubes.a.uplink", "uplink_gateway needs uplink_address"),
                  DiagAt(9, 10, "qubes.b.uplink", "takes no uplink_address")));
  EXPECT_TRUE(LoadToml("network_range = \"10.138.0.0/16\"\n").system);
  EXPECT_THAT(
      LoadToml("[qubes.a]\nclass = \"standalone\"\nprovides_network = true\nuplink = \"vif3\"\n"
               "uplink_address = \"192.0.2.2/24\"\n")
          .diagnostics,
      ElementsAre(DiagPath("qubes.a.uplink", "netvms' client links")));
  EXPECT_THAT(LoadToml("[qubes.t]\nclass = \"template\"\n[qubes.d]\nclass = "
                       "\"disposable-template\"\ntemplate = \"t\"\nprovides_network = true\n"
                       "uplink = \"eth0\"\nuplink_address = \"192.0.2.2/24\"\n")
                  .diagnostics,
              ElementsAre(DiagPath("qubes.d.uplink", "only to app and standalone")));
}

TEST(ValidationTest, FirewallRuleSyntax) {
  LoadOutcome outcome = LoadToml(
      "[qubes.w]\nclass = \"standalone\"\n"             // 1-2
      "[[qubes.w.firewall]]\naction = \"allow\"\n"      // 3-4
      "[[qubes.w.firewall]]\naction = \"accept\"\ndsthost = \"10.0.0.0/33\"\n"  // 5-7
      "[[qubes.w.firewall]]\naction = \"accept\"\ndstports = \"80\"\n"          // 8-10
      "[[qubes.w.firewall]]\naction = \"accept\"\nproto = \"tcp\"\ndstports = \"90-80\"\n"  // 11-14
      "[[qubes.w.firewall]]\naction = \"accept\"\nproto = \"icmp\"\nicmptype = 256\n"  // 15-18
      "[[qubes.w.firewall]]\naction = \"accept\"\nspecialtarget = \"ntp\"\n"           // 19-21
      "[[qubes.w.firewall]]\naction = \"accept\"\nexpire = \"tomorrow\"\n"             // 22-24
      "[[qubes.w.firewall]]\naction = \"accept\"\nproto = \"sctp\"\n"                  // 25-27
      "[[qubes.w.firewall]]\naction = \"accept\"\nproto = \"udp\"\ndstports = 70000\n"  // 28-31
      "[[qubes.w.firewall]]\naction = \"accept\"\ndsthost = \"bad host!\"\ncomment = 5\n");  // 32-35
  EXPECT_THAT(
      outcome.diagnostics,
      ElementsAre(DiagAt(4, 10, "qubes.w.firewall[0].action", "invalid value 'allow'"),
                  DiagAt(7, 11, "qubes.w.firewall[1].dsthost", "invalid IPv4 prefix length"),
                  DiagAt(10, 12, "qubes.w.firewall[2].dstports", "dstports needs proto"),
                  DiagAt(14, 12, "qubes.w.firewall[3].dstports", "first port is above the last"),
                  DiagAt(18, 12, "qubes.w.firewall[4].icmptype", "256 is out of range"),
                  DiagAt(21, 17, "qubes.w.firewall[5].specialtarget", "invalid value 'ntp'"),
                  DiagAt(24, 10, "qubes.w.firewall[6].expire", "expected an integer"),
                  DiagAt(27, 9, "qubes.w.firewall[7].proto", "invalid value 'sctp'"),
                  DiagAt(31, 12, "qubes.w.firewall[8].dstports", "70000 is out of range"),
                  DiagAt(34, 11, "qubes.w.firewall[9].dsthost", "invalid dsthost 'bad host!'"),
                  DiagAt(35, 11, "qubes.w.firewall[9].comment", "expected a string")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, FirewallRulesAreNormalised) {
  LoadOutcome outcome = LoadToml(
      "[qubes.w]\nclass = \"standalone\"\n"
      "[[qubes.w.firewall]]\naction = \"accept\"\ndsthost = \"2001:DB8::/32\"\nproto = \"udp\"\n"
      "dstports = 53\nexpire = 1900000000\ncomment = \"dns\"\n"
      "[[qubes.w.firewall]]\naction = \"drop\"\ndsthost = \"Host.Example\"\n");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  const auto& rules = outcome.system->qubes[0].firewall;
  ASSERT_THAT(rules, SizeIs(2));
  EXPECT_EQ(rules[0].dsthost, "2001:db8::/32");
  EXPECT_EQ(rules[0].dstports, (PortRange{53, 53}));
  EXPECT_EQ(rules[0].expire, 1900000000);
  EXPECT_EQ(rules[0].comment, "dns");
  EXPECT_EQ(rules[1].dsthost, "host.example");
  EXPECT_EQ(rules[1].proto, FirewallProto::kAny);
}

TEST(ValidationTest, RuntimeFirewallRulesKeptOrResetOnApply) {
  LoadOutcome kept = LoadToml("[qubes.w]\nclass = \"standalone\"\n");
  ASSERT_TRUE(kept.system) << Dump(kept.diagnostics);
  EXPECT_FALSE(kept.system->qubes[0].reset_runtime_firewall) << "kept by default";
  LoadOutcome reset =
      LoadToml("[qubes.w]\nclass = \"standalone\"\nfirewall_runtime = \"reset-on-apply\"\n");
  ASSERT_TRUE(reset.system) << Dump(reset.diagnostics);
  EXPECT_TRUE(reset.system->qubes[0].reset_runtime_firewall);
  // It survives the normalised JSON both ways.
  std::string normalised = config::ToJson(*reset.system);
  EXPECT_NE(normalised.find("\"firewall_runtime\": \"reset-on-apply\""), std::string::npos)
      << normalised;
  LoadOutcome bad = LoadToml("[qubes.w]\nclass = \"standalone\"\nfirewall_runtime = \"reset\"\n");
  EXPECT_FALSE(bad.system);
  ASSERT_THAT(bad.diagnostics, SizeIs(1));
  EXPECT_EQ(bad.diagnostics[0].path, "qubes.w.firewall_runtime");
  EXPECT_EQ(bad.diagnostics[0].line, 3);
  EXPECT_NE(bad.diagnostics[0].message.find("reset-on-apply"), std::string::npos)
      << bad.diagnostics[0].message;
}

TEST(ValidationTest, ValueRangesAndTypes) {
  LoadOutcome outcome = LoadToml(
      "policy_dir = \"relative/dir\"\n"  // 1
      "[qubes.d]\nclass = \"disposable\"\ntemplate = \"dvm\"\n"  // 2-4
      "idle_timeout = 604801\nmemory = 1048577\ncpus = 0\n"     // 5-7
      "features = { gui = 1, \"bad key\" = \"x\" }\n"           // 8
      "backend = \"vm\"\nprovides_network = \"yes\"\n"          // 9-10
      "firewall = { action = \"drop\" }\ntags = \"work\"\n"     // 11-12
      "uuid = 5\n"                                               // 13
      "[qubes.dvm]\nclass = \"disposable-template\"\ntemplate = \"t\"\n"  // 14-16
      "[qubes.t]\nclass = \"template\"\nsource = \"dir:relative\"\n"      // 17-19
      "[qubes.x]\nclass = \"standalone\"\nmemory = 1979-05-27\n");        // 20-22
  EXPECT_THAT(
      outcome.diagnostics,
      ElementsAre(DiagAt(1, 14, "policy_dir", "absolute path"),
                  DiagAt(5, 16, "qubes.d.idle_timeout", "out of range (expected 0..604800 seconds)"),
                  DiagAt(6, 10, "qubes.d.memory", "out of range"),
                  DiagAt(7, 8, "qubes.d.cpus", "0 is out of range (expected 1..1024)"),
                  DiagAt(8, 20, "qubes.d.features.gui", "quote it"),
                  DiagAt(8, 23, "qubes.d.features.\"bad key\"", "feature name"),
                  DiagAt(9, 11, "qubes.d.backend", "vm backend is not available yet"),
                  DiagAt(10, 20, "qubes.d.provides_network", "expected a boolean"),
                  DiagAt(11, 12, "qubes.d.firewall", "expected an array of rule tables, got table"),
                  DiagAt(12, 8, "qubes.d.tags", "expected an array of strings, got string"),
                  DiagAt(13, 8, "qubes.d.uuid", "expected a string, got integer"),
                  DiagAt(19, 10, "qubes.t.source", "absolute path"),
                  DiagAt(22, 10, "qubes.x.memory", "expected an integer, got date")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, IoWeightAndIoMax) {
  LoadOutcome outcome = LoadToml(
      "[qubes.t]\nclass = \"template\"\n"
      "[qubes.a]\ntemplate = \"t\"\nio_weight = 250\n"
      "io_max = { write_bps = 1048576, read_iops = 200 }\n");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  const Qube* a = outcome.system->Find("a");
  EXPECT_EQ(a->io_weight, 250u);
  EXPECT_EQ(a->io_max, (IoMax{.read_bps = 0, .write_bps = 1048576, .read_iops = 200, .write_iops = 0}));
  const Qube* t = outcome.system->Find("t");
  EXPECT_EQ(t->io_weight, 100u);  // defaults: weight 100, nothing throttled
  EXPECT_EQ(t->io_max, IoMax{});
  // JSON (and Nix, which evaluates to the same tree) reads the same keys.
  LoadOutcome json = LoadJson(
      R"({"qubes": {"t": {"class": "template"}, "a": {"template": "t", "io_weight": 250,)"
      R"( "io_max": {"write_bps": 1048576, "read_iops": 200}}}})");
  ASSERT_TRUE(json.system) << Dump(json.diagnostics);
  EXPECT_EQ(*json.system, *outcome.system);

  LoadOutcome bad = LoadToml(
      "[qubes.t]\nclass = \"template\"\nio_weight = 0\n"            // 1-3
      "io_max = { write_bps = -1, read_ops = 5, read_iops = \"x\" }\n"  // 4
      "[qubes.u]\nclass = \"template\"\nio_weight = 10001\nio_max = 5\n");  // 5-8
  EXPECT_THAT(bad.diagnostics,
              ElementsAre(DiagAt(3, 13, "qubes.t.io_weight", "0 is out of range (expected 1..10000)"),
                          DiagAt(4, 24, "qubes.t.io_max.write_bps", "-1 is out of range"),
                          DiagAt(4, 28, "qubes.t.io_max.read_ops", "unknown key 'read_ops'"),
                          DiagAt(4, 54, "qubes.t.io_max.read_iops", "expected an integer"),
                          DiagAt(7, 13, "qubes.u.io_weight", "10001 is out of range"),
                          DiagAt(8, 10, "qubes.u.io_max", "expected a table of I/O limits")))
      << Dump(bad.diagnostics);
}

TEST(ValidationTest, StringsMustBeCleanUtf8WithoutControlCharacters) {
  LoadOutcome outcome = LoadJson(
      "{\"qubes\": {\"a\": {\"class\": \"standalone\", \"features\": {\"x\": \"a\\u0000b\"}}}}");
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagPath("qubes.a.features.x", "control character")));
}

TEST(ValidationTest, UuidsAreValidatedAndUnique) {
  LoadOutcome outcome = LoadToml(
      "[qubes.a]\nclass = \"standalone\"\nuuid = \"1361BA56-F2B5-5664-B47A-960C7DF9FEFD\"\n"
      "[qubes.work]\nclass = \"standalone\"\n");
  // 'work' derives exactly the UUID that 'a' claims.
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(3, 8, "qubes.a.uuid", "used by both 'a' and 'work'")))
      << Dump(outcome.diagnostics);

  LoadOutcome ok = LoadToml(
      "[qubes.a]\nclass = \"standalone\"\nuuid = \"0E9C6B0A-0000-4000-8000-000000000001\"\n");
  ASSERT_TRUE(ok.system) << Dump(ok.diagnostics);
  EXPECT_EQ(ok.system->qubes[0].uuid, "0e9c6b0a-0000-4000-8000-000000000001");
}

TEST(ValidationTest, DefaultDispvmMustBeADisposableTemplate) {
  LoadOutcome outcome = LoadToml(std::string(kBase) +
                                 "[qubes.w]\ntemplate = \"base\"\ndefault_dispvm = \"base\"\n");
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagAt(9, 18, "qubes.w.default_dispvm",
                                 "'base' is a template qube; default_dispvm must name a "
                                 "disposable-template qube")))
      << Dump(outcome.diagnostics);
}

TEST(ValidationTest, DeepNestingIsRefusedNotCrashed) {
  std::string toml = "a";
  for (int i = 0; i < 20000; ++i) toml += ".a";
  toml += " = 1\n";
  LoadOutcome dotted = LoadToml(toml);
  EXPECT_THAT(dotted.diagnostics, ElementsAre(DiagPath("", "nest too deep")));

  std::string json = std::string(100000, '[') + std::string(100000, ']');
  LoadOutcome arrays = LoadJson(json);
  EXPECT_THAT(arrays.diagnostics, ElementsAre(DiagAt(1, 65, "", "deeper than 64 levels")));

  std::string inline_tables = "x = ";
  for (int i = 0; i < 300; ++i) inline_tables += "{a=";
  inline_tables += "1" + std::string(300, '}');
  EXPECT_FALSE(LoadToml(inline_tables).system);
}

// toml++ 3.3 reaches __builtin_unreachable() when asked whether some non-ASCII
// code points (U+048B here) are whitespace; such input is refused before it.
TEST(ValidationTest, NonAsciiOutsideStringsIsRefusedBeforeTomlxx) {
  LoadOutcome bare = LoadToml("[qubes.a]\nclass = \"standalone\"\n[qubes\xd2\x8b" "et]\n");
  EXPECT_THAT(bare.diagnostics, ElementsAre(DiagAt(3, 0, "", "non-ASCII character outside")));
  LoadOutcome after_value = LoadToml("x = 1\xd2\x8b\n");
  EXPECT_THAT(after_value.diagnostics, ElementsAre(DiagAt(1, 0, "", "non-ASCII")));
  // The lexer of the pre-scan takes '"' for a string; toml++ scans on as a bad
  // number: caught by the ASCII probe parse (fuzzer find).
  LoadOutcome in_bad_value = LoadToml("x = [1tags\"q \xef\xbb\xb7T\n");
  EXPECT_THAT(in_bad_value.diagnostics, ElementsAre(DiagPath("", "TOML syntax error")));
  LoadOutcome escaped = LoadToml("x = \"\"\"a\\\n   \xd2\x8b\"\"\"\n");
  EXPECT_THAT(escaped.diagnostics, ElementsAre(DiagAt(2, 0, "", "after a backslash")));
  // Non-ASCII inside strings and comments is fine.
  LoadOutcome fine = LoadToml(
      "# gr\xc3\xbc\xc3\x9f\xd2\x8b\n[qubes.a]\nclass = \"standalone\"\n"
      "features = { \"x\" = \"\xd2\x8b\", y = \"\"\"\xd2\x8b\\u0041\"\"\", z = '\xd2\x8b' }\n");
  EXPECT_TRUE(fine.system) << Dump(fine.diagnostics);
}

TEST(LoaderTest, FileErrors) {
  LoadOutcome missing = LoadSystem("/nonexistent/system.toml");
  EXPECT_FALSE(missing.system);
  ASSERT_THAT(missing.diagnostics, SizeIs(1));
  EXPECT_THAT(missing.diagnostics[0].ToString(),
              ::testing::StartsWith("/nonexistent/system.toml: cannot read"));

  LoadOutcome unknown = LoadSystem(SourcePath("README.md"));
  ASSERT_THAT(unknown.diagnostics, SizeIs(1));
  EXPECT_THAT(unknown.diagnostics[0].message, ::testing::HasSubstr(".toml, .json or .nix"));

  Result<System> joined = LoadSystemFile(SourcePath("tests/unit/config/data/invalid.toml"));
  ASSERT_FALSE(joined);
  EXPECT_EQ(std::count(joined.error().message().begin(), joined.error().message().end(), '\n'),
            13);  // 14 diagnostics, one per line
  EXPECT_TRUE(LoadSystemFile(SourcePath("examples/system.toml")));
}

TEST(DiagnosticTest, ToStringLeavesOutUnknownParts) {
  EXPECT_EQ((Diagnostic{"f.toml", 3, 7, "qubes.work.netvm", "bad"}).ToString(),
            "f.toml:3:7: qubes.work.netvm: bad");
  EXPECT_EQ((Diagnostic{"f.toml", 3, 0, "", "bad"}).ToString(), "f.toml:3: bad");
  EXPECT_EQ((Diagnostic{"f.nix", 0, 0, "qubes.a", "bad"}).ToString(), "f.nix: qubes.a: bad");
}

TEST(LoaderTest, FormatFromPath) {
  EXPECT_EQ(FormatFromPath("a/system.toml"), Format::kToml);
  EXPECT_EQ(FormatFromPath("system.json"), Format::kJson);
  EXPECT_EQ(FormatFromPath("/etc/system.nix"), Format::kNix);
  EXPECT_EQ(FormatFromPath("system.yaml"), std::nullopt);
  EXPECT_EQ(FormatFromPath("nix"), std::nullopt);
}

}  // namespace
}  // namespace tessera::config
