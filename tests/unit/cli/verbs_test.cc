// The command line's verb dispatch (src/cli/main.cc): each verb is built only
// when named, so every verb must still parse alone, help must list them all,
// and an unknown verb must fail with a hint. Runs the real binary.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
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

const std::vector<std::string> kVerbs = {"apply",     "call",   "cell",     "config",  "daemon",
                                         "events",    "kill",   "logs",     "ls",      "policy",
                                         "prefs",     "prompt", "restart",  "run",     "start",
                                         "clipboard", "stop",   "template", "version", "volume", "firewall"};

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
}

// No verb is a usage error (exit 2) that prints the help, listing the verbs,
// on stderr; the same for a verb that needs a subcommand.
TEST(CliVerbsTest, NoVerbPrintsTheHelp) {
  CliRun none = RunCli({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.out, "");
  for (const auto& verb : kVerbs) {
    EXPECT_THAT(none.err, HasSubstr("\n  " + verb + " ")) << verb;
  }
  EXPECT_THAT(none.err, ::testing::Not(HasSubstr("subcommand is required")));
  CliRun only_config = RunCli({"--config", "x.toml"});
  EXPECT_EQ(only_config.exit_code, 2);
  EXPECT_THAT(only_config.err, HasSubstr("\n  policy "));
  for (const std::string group : {"config", "policy", "cell", "template"}) {
    CliRun bare = RunCli({group});
    EXPECT_EQ(bare.exit_code, 2) << group;
    EXPECT_THAT(bare.err, HasSubstr("Usage")) << group;
    EXPECT_THAT(bare.err, HasSubstr("SUBCOMMAND")) << group << ": " << bare.err;
  }
  // Other usage errors keep CLI11's own message.
  CliRun bogus = RunCli({"config", "check", "--bogus"});
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_THAT(bogus.err, HasSubstr("--bogus"));
}

// Every error message names its command once ("tessera X: ...", never
// "tessera: tessera X: ..." or "error: error: ...") and ends with a newline,
// so the next line never runs on. Failures that need no daemon and no root.
TEST(CliVerbsTest, ErrorLinesNameTheCommandOnceAndEndWithANewline) {
  char dir[] = "/tmp/tessera-cli-errors-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string tmp = dir;
  const std::string config = tmp + "/system.toml";
  {
    std::ofstream(config) << "[qubes.base]\nclass = \"template\"\n"
                             "[qubes.work]\nclass = \"app\"\ntemplate = \"base\"\n";
  }
  const std::vector<std::string> env = {"TESSERA_RUNTIME_DIR=" + tmp + "/run",
                                        "TESSERA_STATE_DIR=" + tmp + "/state"};
  const std::vector<std::vector<std::string>> failing = {
      {"ls"},
      {"ls", "work"},
      {"prefs", "work", "--json"},
      {"events"},
      {"apply", config, "--dry-run"},
      {"config", "check", tmp + "/missing.toml"},
      {"policy", "eval", "--system", tmp + "/missing.json", "a", "b", "c"},
      {"--config", config, "cell", "run", "--dispvm", "work", "--", "/bin/true"},
      {"--config", config, "cell", "run", "nosuchqube", "--", "/bin/true"},
      {"template", "show", "nosuchtemplate"},
      {"start"},
      {"frob"},
  };
  const std::regex prefix("tessera( [a-z]+)*: ");
  for (const auto& args : failing) {
    std::string what;
    for (const auto& a : args) what += " " + a;
    CliRun run = RunCli(args, env);
    EXPECT_NE(run.exit_code, 0) << what;
    ASSERT_FALSE(run.err.empty()) << what;
    EXPECT_EQ(run.err.back(), '\n') << what << ": " << run.err;
    std::istringstream lines(run.err);
    for (std::string line; std::getline(lines, line);) {
      auto count = std::distance(std::sregex_iterator(line.begin(), line.end(), prefix),
                                 std::sregex_iterator());
      EXPECT_LE(count, 1) << what << ": " << line;
      EXPECT_THAT(line, ::testing::Not(HasSubstr("error: error"))) << what;
    }
  }
  std::filesystem::remove_all(tmp);
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

// The subcommands `tessera GROUP --help` lists, sorted.
std::vector<std::string> SubcommandsInHelp(const std::string& group) {
  CliRun help = RunCli({group, "--help"});
  EXPECT_EQ(help.exit_code, 0) << group << ": " << help.err;
  std::vector<std::string> names;
  std::istringstream lines(help.out);
  bool in_list = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("Subcommands:", 0) == 0 || line.rfind("SUBCOMMANDS:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (!in_list || line.rfind("   ", 0) == 0) continue;  // a wrapped description
    if (line.rfind("  ", 0) == 0) {
      // "  list, ls   description": the name and its aliases.
      std::istringstream words(line.substr(2, line.find("  ", 2) - 2));
      for (std::string w; words >> w;)
        names.push_back(w.back() == ',' ? w.substr(0, w.size() - 1) : w);
    } else if (!line.empty()) {
      in_list = false;
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> SortedWords(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line != "--help") words.push_back(line);
  }
  std::sort(words.begin(), words.end());
  return words;
}

TEST(CliCompletionTest, CompletesTheSubcommandsOfEveryGroup) {
  for (const std::string group : {"config", "policy", "template", "cell"}) {
    std::vector<std::string> help = SubcommandsInHelp(group);
    ASSERT_FALSE(help.empty()) << group;
    EXPECT_EQ(SortedWords(Complete({"tessera", group, ""})), help) << group;
  }
  EXPECT_EQ(Complete({"tessera", "--config", "x.toml", "policy", "ex"}), "explain\n");
  EXPECT_EQ(Complete({"tessera", "config", "show", "--j"}), "--json\n");
  EXPECT_EQ(Complete({"tessera", "config", "check", "--ex"}), "--example\n");
  EXPECT_EQ(Complete({"tessera", "policy", "eval", "--sys"}), "--system\n");
  EXPECT_EQ(Complete({"tessera", "policy", "explain", "--policy-dir", "/nonexistent", "--ru"}),
            "--runtime-dir\n");
  EXPECT_EQ(Complete({"tessera", "policy", "eval", "qubes.Filecopy", "@de"}), "@default\n");
  EXPECT_EQ(Complete({"tessera", "template", "build", "--f"}), "--from\n");
  EXPECT_THAT(Complete({"tessera", "template", "build", "x", "--from", "debo"}),
              HasSubstr("debootstrap\n"));
  EXPECT_EQ(Complete({"tessera", "template", "list", "--"}), "--json\n");
  EXPECT_EQ(Complete({"tessera", "cell", "run", "--d"}), "--dispvm\n");
  EXPECT_EQ(Complete({"tessera", "prefs", "work", "--j"}), "--json\n");
}

}  // namespace
}  // namespace tessera::cli
