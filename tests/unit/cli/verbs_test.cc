// The command line's verb dispatch (src/cli/main.cc): each verb is built only
// when named, so every verb must still parse alone, help must list them all,
// and an unknown verb must fail with a hint. Runs the real binary.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/cli_run.h"

namespace tessera::cli {
namespace {

using tessera::testing::CliRun;
using tessera::testing::RunCli;
using ::testing::HasSubstr;

const std::vector<std::string> kVerbs = {"apply", "cell", "config",   "daemon", "events",  "kill",
                                         "logs",  "ls",   "policy",   "prefs",  "restart", "run",
                                         "start", "stop", "template", "version"};

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

}  // namespace
}  // namespace tessera::cli
