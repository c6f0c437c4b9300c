// The command line's verb dispatch (src/cli/main.cc): each verb is built only
// when named, so every verb must still parse alone, help must list them all,
// and an unknown verb must fail with a hint. Runs the real binary.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli_run.h"

namespace tessera::cli {
namespace {

using tessera::testing::CliRun;
using tessera::testing::RunCli;
using tessera::testing::RunProgram;
using ::testing::HasSubstr;

const std::vector<std::string> kVerbs = {"apply", "cell", "config",   "daemon",  "events",  "kill",
                                         "logs",  "ls",   "policy",   "prefs",   "restart", "run",
                                         "start", "stop", "template", "version", "volume"};

TEST(CliVerbsTest, HelpListsEveryVerb) {
  CliRun run = RunCli({"--help"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const auto& verb : kVerbs) {
    EXPECT_THAT(run.out, HasSubstr("\n  " + verb + " ")) << verb;
  }
}

TEST(CliVerbsTest, EveryVerbParsesWhenItIsTheOnlyOneBuilt) {
  for (const auto& verb : kVerbs) {
    CliRun run = RunCli({verb, "--help"});
    EXPECT_EQ(run.exit_code, 0) << verb << ": " << run.err;
    EXPECT_THAT(run.out, HasSubstr("Usage")) << verb;
    EXPECT_THAT(run.out, HasSubstr(verb)) << verb;
  }
  // The global --config (both spellings) before the verb does not hide it.
  CliRun spaced = RunCli({"--config", "/nonexistent.toml", "version"});
  EXPECT_EQ(spaced.exit_code, 0) << spaced.err;
  EXPECT_THAT(spaced.out, HasSubstr("tessera"));
  CliRun joined = RunCli({"--config=/nonexistent.toml", "version"});
  EXPECT_EQ(joined.exit_code, 0) << joined.err;
}

TEST(CliVerbsTest, UnknownVerbIsAUsageErrorWithAHint) {
  CliRun typo = RunCli({"strat", "work"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("unknown command 'strat'"));
  EXPECT_THAT(typo.err, HasSubstr("did you mean 'start'?"));
  CliRun far = RunCli({"--config", "x.toml", "qqqqqqqq"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_THAT(far.err, HasSubstr("unknown command 'qqqqqqqq'"));
  EXPECT_THAT(far.err, ::testing::Not(HasSubstr("did you mean")));
  CliRun none = RunCli({});
  EXPECT_EQ(none.exit_code, 2);
}

// Runs the bash completion function on COMP_WORDS = `words` (the last one is
// being completed) and returns COMPREPLY, one word per line.
std::string Complete(const std::vector<std::string>& words) {
  std::string script = std::string("source '") + TESSERA_SOURCE_DIR +
                       "/completions/tessera.bash' && COMP_WORDS=(\"$@\") && "
                       "COMP_CWORD=$(($# - 1)) && _tessera && "
                       "if [ ${#COMPREPLY[@]} -gt 0 ]; then printf '%s\\n' \"${COMPREPLY[@]}\"; fi";
  std::vector<std::string> argv = {"bash", "-c", script, "complete"};
  argv.insert(argv.end(), words.begin(), words.end());
  CliRun run = RunProgram(std::move(argv));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  return run.out;
}

TEST(CliCompletionTest, CompletesExactlyTheVerbsTheCliHas) {
  std::vector<std::string> expected = kVerbs;
  expected.push_back("--config");
  expected.push_back("--help");
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> got;
  std::istringstream lines(Complete({"tessera", ""}));
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(Complete({"tessera", "st"}), "start\nstop\n");
  EXPECT_EQ(Complete({"tessera", "--config", "x.toml", "ru"}), "run\n");
  EXPECT_EQ(Complete({"tessera", "ls", "--j"}), "--json\n");
  EXPECT_EQ(Complete({"tessera", "daemon", "--al"}), "--allow-host-sources\n");
}

TEST(CliCompletionTest, RunCompletesTheQubeAfterItsOptionsAndTheirValues) {
  EXPECT_EQ(Complete({"tessera", "run", "--user", ""}), "user\nroot\n");
  // After `--user X` (and --env K=V) the qube's place is still to come:
  // options and qube names, not commands.
  EXPECT_EQ(Complete({"tessera", "run", "--user", "user", "--env", "A=b", "--de"}), "--detach\n");
  EXPECT_EQ(Complete({"tessera", "run", "-u", "root", "--no-f"}), "--no-filter-escape-chars\n");
  // After the qube: commands.
  EXPECT_THAT(Complete({"tessera", "run", "--user", "user", "work", "ech"}), HasSubstr("echo\n"));
}

}  // namespace
}  // namespace tessera::cli
