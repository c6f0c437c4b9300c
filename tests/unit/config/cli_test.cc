// `tessera config` end to end: runs the real binary (TESSERA_CLI) and checks exit
// codes, stdout and stderr lines.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "common/fs.h"
#include "config/loader.h"
#include "config_test_util.h"
#include "support/cli_run.h"

namespace tessera::config {
namespace {

using tessera::testing::CliRun;
using tessera::testing::RunCli;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using testing::SourcePath;
using ::testing::StartsWith;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(ConfigCliTest, CheckValidFile) {
  std::string file = SourcePath("examples/system.toml");
  CliRun run = RunCli({"config", "check", file});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, file + ": ok (7 qubes)\n");
  EXPECT_EQ(run.err, "");
}

TEST(ConfigCliTest, CheckBuiltinExample) {
  CliRun run = RunCli({"config", "check", "--example"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "builtin:example: ok (7 qubes)\n");
  CliRun by_name = RunCli({"config", "check", "builtin:example"});
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(by_name.out, run.out);
}

TEST(ConfigCliTest, CheckInvalidFilePrintsOneDiagnosticPerLine) {
  std::string file = SourcePath("tests/unit/config/data/invalid.toml");
  CliRun run = RunCli({"config", "check", file});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  std::vector<std::string> lines = Lines(run.err);
  ASSERT_THAT(lines, SizeIs(14)) << run.err;
  EXPECT_EQ(lines[1],
            file + ":3:1: polcy_dir: unknown key 'polcy_dir'; did you mean 'policy_dir'?");
  for (const std::string& line : lines) EXPECT_THAT(line, StartsWith(file + ":"));
}

TEST(ConfigCliTest, DefaultFileComesFromConfigFlagAndEnvironment) {
  std::string file = SourcePath("examples/system.toml");
  CliRun flag = RunCli({"--config", file, "config", "check"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_EQ(flag.out, file + ": ok (7 qubes)\n");

  std::string env = "TESSERA_CONFIG=" + SourcePath("tests/unit/config/data/system.json");
  CliRun from_env = RunCli({"config", "check"}, {env});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;
  EXPECT_THAT(from_env.out, HasSubstr("system.json: ok (7 qubes)"));

  CliRun missing = RunCli({"config", "check"}, {"TESSERA_CONFIG=/nonexistent/system.toml"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, StartsWith("/nonexistent/system.toml: cannot read"));
}

TEST(ConfigCliTest, FifoIsRefusedNotWaitedOn) {
  char dir[] = "/tmp/tessera-config-cli-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/system.toml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // `timeout`: a CLI that waits for a writer would hang the test otherwise.
  CliRun run =
      tessera::testing::RunProgram({"timeout", "20", TESSERA_CLI, "config", "check", fifo});
  ::unlink(fifo.c_str());
  ::rmdir(dir);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr(fifo + " is a FIFO, not a regular file"));
}

TEST(ConfigCliTest, ShowJsonIsTheNormalisedModel) {
  CliRun run = RunCli({"config", "show", "--json", "--example"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  LoadOutcome loaded = LoadSystem(std::string(kBuiltinExampleName));
  ASSERT_TRUE(loaded.system);
  EXPECT_EQ(run.out, ToJson(*loaded.system));

  // And what show prints loads back (through the CLI) to the same output.
  std::string dir = "/tmp/tessera-cli-show-" + std::to_string(getpid());
  ASSERT_TRUE(MakeDirs(dir));
  std::string shown = dir + "/shown.json";
  ASSERT_TRUE(WriteFileAtomic(shown, run.out));
  CliRun again = RunCli({"config", "show", "--json", shown});
  unlink(shown.c_str());
  rmdir(dir.c_str());
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, run.out);
}

TEST(ConfigCliTest, ShowTable) {
  CliRun run = RunCli({"config", "show", "--example"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("default dispvm: default-dvm"));
  EXPECT_THAT(run.out, HasSubstr("NAME"));
  std::vector<std::string> lines = Lines(run.out);
  auto find = [&](const std::string& prefix) {
    for (const std::string& line : lines) {
      if (line.rfind(prefix, 0) == 0) return line;
    }
    return std::string();
  };
  EXPECT_THAT(find("vault "), HasSubstr("none"));
  EXPECT_THAT(find("work "), HasSubstr("sys-firewall"));
  EXPECT_THAT(find("base "), HasSubstr("template (busybox)"));
  EXPECT_THAT(run.out, HasSubstr("2. accept dsthost=10.0.0.0/8 proto=tcp dstports=443"));
}

TEST(ConfigCliTest, ShowInvalidFails) {
  CliRun run = RunCli({"config", "show", SourcePath("tests/unit/config/data/invalid.toml")});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(Lines(run.err), SizeIs(14));
}

TEST(ConfigCliTest, NixFile) {
  if (access("/usr/bin/nix-instantiate", X_OK) != 0 && access("/bin/nix-instantiate", X_OK) != 0) {
    GTEST_SKIP() << "nix-instantiate is not installed (Debian: nix-bin)";
  }
  CliRun run = RunCli({"config", "check", SourcePath("examples/system.nix")});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, SourcePath("examples/system.nix") + ": ok (7 qubes)\n");
  CliRun show = RunCli({"config", "show", "--json", SourcePath("examples/system.nix")});
  CliRun toml = RunCli({"config", "show", "--json", SourcePath("examples/system.toml")});
  EXPECT_EQ(show.out, toml.out);
}

TEST(ConfigCliTest, HelpAndUsageErrors) {
  for (std::vector<std::string> args : {std::vector<std::string>{"config", "--help"},
                                        {"config", "check", "--help"},
                                        {"config", "show", "--help"}}) {
    CliRun run = RunCli(args);
    EXPECT_EQ(run.exit_code, 0) << args.back();
    EXPECT_THAT(run.out, HasSubstr("Usage"));
  }
  EXPECT_THAT(RunCli({"config", "show", "--help"}).out, HasSubstr("--json"));
  EXPECT_EQ(RunCli({"config"}).exit_code, 2);
  EXPECT_EQ(RunCli({"config", "check", "--bogus"}).exit_code, 2);
  EXPECT_EQ(RunCli({"config", "check", "a.toml", "b.toml"}).exit_code, 2);
}

}  // namespace
}  // namespace tessera::config
