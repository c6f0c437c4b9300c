// The three formats give the same model; ToJson round-trips and is stable; Nix
// descriptions are really evaluated by nix-instantiate.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "common/fs.h"
#include "config/loader.h"
#include "config/nix_eval.h"
#include "config_test_util.h"

namespace tessera::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using testing::DiagPath;
using testing::LoadToml;
using testing::Dump;
using testing::SourcePath;

bool HaveNix() {
  std::string program = DefaultNixEvalOptions().program;
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

#define REQUIRE_NIX()                                                            \
  if (!HaveNix()) GTEST_SKIP() << "nix-instantiate is not installed (Debian: nix-bin)"

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tessera-config-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::string file = path_ + "/" + name;
    EXPECT_TRUE(WriteFileAtomic(file, text));
    return file;
  }

 private:
  std::string path_;
};

// A system exercising every field, for round trips.
constexpr char kRich[] = R"(
policy_dir = "/srv/policy"
default_dispvm = "dvm"
[qubes.t]
class = "template"
source = "dir:/srv/roots/debian"
uuid = "0E9C6B0A-0000-4000-8000-000000000001"
[qubes.deb]
class = "template"
source = "debootstrap"
[qubes.dvm]
class = "disposable-template"
template = "t"
idle_timeout = 120
netvm = "fw"
[qubes.d]
class = "disposable"
template = "dvm"
idle_timeout = 60
netvm = "fw"
autostart = true
[qubes.fw]
class = "app"
template = "deb"
provides_network = true
netvm = "net"
label = "green"
[qubes.net]
class = "standalone"
provides_network = true
memory = 300
cpus = 4
io_weight = 500
io_max = { read_bps = 10485760, write_bps = 5242880, read_iops = 1000, write_iops = 500 }
tags = ["z", "a", "z", "net-1"]
features = { "service.network-manager" = "1", "empty" = "", "unicode" = "grüße ✓" }
[qubes.off]
class = "app"
template = "t"
default_dispvm = "none"
label = "purple"
[[qubes.d.firewall]]
action = "accept"
dsthost = "2001:DB8::/32"
proto = "udp"
dstports = "1000-2000"
expire = 1900000000
comment = "with \"quotes\" and \\ backslash"
[[qubes.d.firewall]]
action = "accept"
dsthost = "Example.COM"
proto = "tcp"
dstports = 22
[[qubes.d.firewall]]
action = "accept"
specialtarget = "dns"
[[qubes.d.firewall]]
action = "drop"
dsthost = "192.168.1.7"
proto = "icmp"
icmptype = 3
)";

TEST(EquivalenceTest, ExampleTomlAndJsonGiveTheSameModel) {
  LoadOutcome toml = LoadSystem(SourcePath("examples/system.toml"));
  LoadOutcome json = LoadSystem(SourcePath("tests/unit/config/data/system.json"));
  ASSERT_TRUE(toml.system) << Dump(toml.diagnostics);
  ASSERT_TRUE(json.system) << Dump(json.diagnostics);
  EXPECT_EQ(*toml.system, *json.system);
}

TEST(EquivalenceTest, ExampleNixGivesTheSameModelAsToml) {
  REQUIRE_NIX();
  LoadOutcome toml = LoadSystem(SourcePath("examples/system.toml"));
  LoadOutcome nix = LoadSystem(SourcePath("examples/system.nix"));
  ASSERT_TRUE(toml.system) << Dump(toml.diagnostics);
  ASSERT_TRUE(nix.system) << Dump(nix.diagnostics);
  EXPECT_EQ(*toml.system, *nix.system);
  EXPECT_EQ(ToJson(*toml.system), ToJson(*nix.system));
}

TEST(EquivalenceTest, DifferentDocumentsGiveDifferentModels) {
  // Guards the equivalence tests: equality is not trivially true.
  std::string text(BuiltinExampleToml());
  LoadOutcome base = LoadToml(text);
  text.replace(text.find("memory = 2048"), 13, "memory = 2047");
  LoadOutcome changed = LoadToml(text);
  ASSERT_TRUE(base.system && changed.system);
  EXPECT_NE(*base.system, *changed.system);
}

TEST(RoundTripTest, ShowThenLoadGivesTheSameSystem) {
  for (const std::string& text : {std::string(BuiltinExampleToml()), std::string(kRich)}) {
    LoadOutcome first = LoadSystemFromString(text, Format::kToml, "in.toml");
    ASSERT_TRUE(first.system) << Dump(first.diagnostics);
    std::string json = ToJson(*first.system);
    LoadOutcome second = LoadSystemFromString(json, Format::kJson, "show.json");
    ASSERT_TRUE(second.system) << Dump(second.diagnostics) << json;
    EXPECT_EQ(*first.system, *second.system);
    EXPECT_EQ(ToJson(*second.system), json);
  }
}

TEST(RoundTripTest, RichSystemIsNormalised) {
  LoadOutcome outcome = LoadSystemFromString(kRich, Format::kToml, "rich.toml");
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  const System& system = *outcome.system;
  EXPECT_EQ(system.Find("t")->uuid, "0e9c6b0a-0000-4000-8000-000000000001");
  EXPECT_EQ(system.Find("t")->template_source, "dir:/srv/roots/debian");
  EXPECT_EQ(system.Find("deb")->template_source, "debootstrap");
  EXPECT_EQ(system.Find("net")->tags, (std::vector<std::string>{"a", "net-1", "z"}));
  EXPECT_EQ(system.Find("off")->default_dispvm, std::nullopt);
  EXPECT_EQ(system.Find("fw")->default_dispvm, "dvm");
  EXPECT_EQ(system.Find("d")->template_name, "dvm");
  EXPECT_EQ(system.Find("net")->features.at("unicode"), "grüße ✓");
}

TEST(RoundTripTest, ToJsonIsStableAndSorted) {
  LoadOutcome a = LoadSystemFromString(kRich, Format::kToml, "a.toml");
  LoadOutcome b = LoadSystemFromString(kRich, Format::kToml, "b.toml");
  ASSERT_TRUE(a.system && b.system);
  std::string json = ToJson(*a.system);
  EXPECT_EQ(json, ToJson(*b.system));
  EXPECT_EQ(json, ToJson(*a.system));
  // Keys sorted, two-space indent, trailing newline: the documented form.
  EXPECT_EQ(
      json.rfind("{\n  \"default_dispvm\": \"dvm\",\n  \"network_range\": \"10.137.0.0/16\",\n  "
                 "\"policy_dir\": \"/srv/policy\",\n",
                 0),
      0u)
      << json;
  EXPECT_EQ(json.back(), '\n');
  EXPECT_THAT(json, HasSubstr("\"dsthost\": \"2001:db8::/32\""));
  EXPECT_THAT(json, HasSubstr("\"dstports\": \"1000-2000\""));
  EXPECT_THAT(json, HasSubstr("\"netvm\": \"none\""));
  EXPECT_THAT(json, HasSubstr("\"source\": \"debootstrap\""));
}

TEST(NixTest, EvaluationErrorsNameFileAndLine) {
  REQUIRE_NIX();
  TempDir dir;
  std::string file = dir.Write("bad.nix", "{\n  qubes = {\n    w = { class = \"app\"; template = x; };\n  };\n}\n");
  LoadOutcome outcome = LoadSystem(file);
  EXPECT_FALSE(outcome.system);
  ASSERT_THAT(outcome.diagnostics, SizeIs(1));
  const Diagnostic& d = outcome.diagnostics[0];
  EXPECT_EQ(d.file, file);
  EXPECT_EQ(d.line, 3);
  EXPECT_EQ(d.column, 37);
  EXPECT_THAT(d.message, HasSubstr("undefined variable 'x'"));
  EXPECT_THAT(d.message, ::testing::Not(HasSubstr("nixbld")));

  std::string syntax = dir.Write("syntax.nix", "{ a = ; }\n");
  LoadOutcome broken = LoadSystem(syntax);
  ASSERT_THAT(broken.diagnostics, SizeIs(1));
  EXPECT_EQ(broken.diagnostics[0].line, 1);
  EXPECT_EQ(broken.diagnostics[0].column, 7);
  EXPECT_THAT(broken.diagnostics[0].message, HasSubstr("syntax error"));
}

TEST(NixTest, ValidationErrorsSayThereAreNoLineNumbers) {
  REQUIRE_NIX();
  TempDir dir;
  std::string file = dir.Write(
      "v.nix",
      "let mk = n: { class = \"app\"; template = \"base\"; netvm = n; }; in\n"
      "{ qubes = { base = { class = \"template\"; }; a = mk \"nope\"; b = mk \"none\"; "
      "c = { class = \"standalone\"; memory = 1; }; }; }\n");
  LoadOutcome outcome = LoadSystem(file);
  EXPECT_FALSE(outcome.system);
  EXPECT_THAT(outcome.diagnostics,
              ElementsAre(DiagPath("qubes.a.netvm", "no qube named 'nope'"),
                          DiagPath("qubes.c.memory", "out of range")))
      << Dump(outcome.diagnostics);
  for (const Diagnostic& d : outcome.diagnostics) {
    EXPECT_EQ(d.file, file);
    EXPECT_EQ(d.line, 0);
    EXPECT_THAT(d.message, HasSubstr("no line numbers: evaluated Nix"));
  }
}

TEST(NixTest, FunctionsAndImportsWork) {
  REQUIRE_NIX();
  TempDir dir;
  dir.Write("helper.nix", "{ solo = name: { ${name} = { class = \"standalone\"; }; }; }\n");
  std::string file = dir.Write("main.nix",
                               "let h = import ./helper.nix; in { qubes = h.solo \"a\" // "
                               "h.solo \"b\"; }\n");
  LoadOutcome outcome = LoadSystem(file);
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  EXPECT_THAT(outcome.system->qubes, SizeIs(2));
}

// CONFIG.md: a top-level function whose arguments all have defaults is
// called automatically (nix-instantiate alone cannot convert it to JSON).
TEST(NixTest, TopLevelFunctionWithDefaultsIsCalled) {
  REQUIRE_NIX();
  TempDir dir;
  std::string file = dir.Write(
      "fn.nix",
      "{ memory ? 640, ... }: { qubes.a = { class = \"standalone\"; inherit memory; }; }\n");
  LoadOutcome outcome = LoadSystem(file);
  ASSERT_TRUE(outcome.system) << Dump(outcome.diagnostics);
  ASSERT_THAT(outcome.system->qubes, SizeIs(1));
  EXPECT_EQ(outcome.system->qubes[0].memory_mib, 640u);

  // An argument without a default cannot be supplied: a clear error naming
  // the file, not a location inside tessera's wrapper expression.
  std::string needs = dir.Write("needs.nix", "{ memory }: { qubes = { }; }\n");
  LoadOutcome refused = LoadSystem(needs);
  EXPECT_FALSE(refused.system);
  ASSERT_THAT(refused.diagnostics, SizeIs(1));
  EXPECT_EQ(refused.diagnostics[0].file, needs);
  EXPECT_THAT(refused.diagnostics[0].message,
              HasSubstr("called without required argument 'memory'"));
  EXPECT_THAT(refused.diagnostics[0].message, HasSubstr("give every argument a default"));
  EXPECT_THAT(refused.diagnostics[0].ToString(), ::testing::Not(HasSubstr("\u00abstring")));
}

TEST(NixTest, RestrictedEvaluationCannotReadOtherFiles) {
  REQUIRE_NIX();
  TempDir dir;
  std::string file = dir.Write(
      "leak.nix", "{ qubes = {}; policy_dir = builtins.readFile \"/etc/hostname\"; }\n");
  LoadOutcome outcome = LoadSystem(file);
  EXPECT_FALSE(outcome.system);
  ASSERT_THAT(outcome.diagnostics, SizeIs(1));
  EXPECT_THAT(outcome.diagnostics[0].message, HasSubstr("forbidden in restricted mode"));
}

TEST(NixTest, FromStringUsesATemporaryFileAndTheDisplayName) {
  REQUIRE_NIX();
  LoadOutcome ok = LoadSystemFromString("{ qubes.a.class = \"standalone\"; }", Format::kNix,
                                        "inline.nix");
  ASSERT_TRUE(ok.system) << Dump(ok.diagnostics);
  LoadOutcome bad = LoadSystemFromString("{ qubes = ", Format::kNix, "inline.nix");
  ASSERT_THAT(bad.diagnostics, SizeIs(1));
  EXPECT_EQ(bad.diagnostics[0].file, "inline.nix");
}

TEST(NixTest, NonJsonValuesAreErrors) {
  REQUIRE_NIX();
  TempDir dir;
  std::string file = dir.Write("fn.nix", "{ qubes = { a = x: x; }; }\n");
  LoadOutcome outcome = LoadSystem(file);
  ASSERT_THAT(outcome.diagnostics, SizeIs(1));
  EXPECT_THAT(outcome.diagnostics[0].message, HasSubstr("cannot convert a function to JSON"));
}

// The evaluator runs under a timeout and is killed when it exceeds it. A stand-in
// program that never finishes shows the kill path without loading the machine.
TEST(NixEvalTest, TimeoutKillsTheEvaluator) {
  TempDir dir;
  std::string script = dir.Write("slow-nix", "#!/bin/sh\nexec sleep 60\n");
  chmod(script.c_str(), 0755);
  NixEvalOptions options;
  options.program = script;
  options.timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  NixResult result = EvalNixFile(dir.Write("x.nix", "{}"), options);
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error_message, HasSubstr("did not finish"));
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST(NixEvalTest, MissingEvaluatorIsAClearError) {
  NixEvalOptions options;
  options.program = "/nonexistent/nix-instantiate";
  NixResult result = EvalNixFile("/tmp/x.nix", options);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error_message, HasSubstr("cannot run /nonexistent/nix-instantiate"));
}

TEST(NixEvalTest, OutputIsLimited) {
  TempDir dir;
  std::string script = dir.Write("chatty-nix", "#!/bin/sh\nexec yes\n");
  chmod(script.c_str(), 0755);
  NixEvalOptions options;
  options.program = script;
  options.max_output_bytes = 1 << 20;
  NixResult result = EvalNixFile(dir.Write("x.nix", "{}"), options);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error_message, HasSubstr("more than 1 MiB"));
}

TEST(NixEvalTest, ParsesNixErrorText) {
  NixResult result;
  ParseNixError(
      "warning: the group 'nixbld' specified in 'build-users-group' does not exist\n"
      "error: undefined variable 'x'\n\n"
      "       at /etc/tessera/system.nix:12:5:\n\n"
      "           11|   qubes = {\n"
      "           12|     x;\n"
      "             |     ^\n"
      "(use '--show-trace' to show detailed location information)\n",
      result);
  EXPECT_EQ(result.error_message, "undefined variable 'x'");
  EXPECT_EQ(result.error_file, "/etc/tessera/system.nix");
  EXPECT_EQ(result.error_line, 12);
  EXPECT_EQ(result.error_column, 5);

  NixResult plain;
  ParseNixError("warning: the group 'nixbld' specified does not exist\nsomething broke\n", plain);
  EXPECT_EQ(plain.error_message, "something broke");
}

}  // namespace
}  // namespace tessera::config
