// Templates Nix built (`source = "nix"`), through tesserad and the CLI, with
// store paths made by the host's own Nix (`builtins.derivation` with a shell
// builder; Debian's nix-bin): an app qube sees exactly its template's
// closure at /nix/store (erofs and squashfs images) and runs the template's
// software; the closure is a GC root while the qube runs and not after; a
// new root in the description is a new generation at the next start, the
// running qube keeping its own; the template does not run as a qube.

#include "storage/nix_template.h"

#include <algorithm>
#include <filesystem>

#include "common/names.h"
#include "common/spawn.h"
#include "integration/daemon/daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

class NixTemplateTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped()) return;
    if (::access("/usr/bin/nix-build", X_OK) != 0) {
      GTEST_SKIP() << "nix-build not installed (Debian package nix-bin; scripts/install-deps.sh)";
    }
    if (::access("/bin/busybox", X_OK) != 0) {
      GTEST_SKIP() << "/bin/busybox missing (Debian package busybox-static)";
    }
  }

  void TearDown() override {
    if (!root_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(storage::NixGcRootsDir(layout_), ec);
    }
    DaemonTest::TearDown();
  }

  // Builds attribute `attr` of the derivations at `version`; its store path.
  std::string Build(const std::string& attr, const std::string& version) {
    CliResult r = Run({"/usr/bin/nix-build", "--no-out-link", "--option", "build-users-group", "",
                       "--option", "substituters", "", "--option", "sandbox", "false",
                       std::string(TESSERA_SOURCE_DIR) + "/tests/nix/store-paths.nix", "--argstr",
                       "version", version, "-A", attr});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string path = r.out.substr(0, r.out.find('\n'));
    EXPECT_TRUE(IsStorePath(path)) << path;
    return path;
  }

  // The closure of `path` as closureInfo's store-paths lists it.
  std::vector<std::string> Closure(const std::string& path, const std::string& file) {
    CliResult r = Run({"/usr/bin/nix-store", "-qR", path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(WriteFileAtomic(file, r.out));
    std::vector<std::string> out;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) out.push_back(line.substr(line.rfind('/') + 1));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  static CliResult Run(std::vector<std::string> argv) {
    ProcessOptions options;
    options.argv = std::move(argv);
    options.out = Output::kCapture;
    options.err = Output::kCapture;
    options.timeout = std::chrono::seconds(120);
    auto r = RunProcess(options);
    if (!r) return CliResult{-1, "", r.error().ToString()};
    return CliResult{r->exit_code, r->out, r->err};
  }

  std::string System(const std::string& root, const std::string& closure,
                     const std::string& image) {
    return "[qubes.nx-env]\nclass = \"template\"\nsource = \"nix\"\nnix = { root = \"" + root +
           "\", closure = \"" + closure + "\", image = \"" + image +
           "\" }\n\n[qubes.nx-work]\nclass = \"app\"\ntemplate = \"nx-env\"\nnetvm = "
           "\"none\"\nmemory = 256\n";
  }

  // What `ls -a /nix/store` shows in the qube, sorted, without . and ..
  std::vector<std::string> StoreSeenBy(const std::string& qube) {
    CliResult r = Cli({"run", qube, "--", "ls", "-a", "/nix/store"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    std::istringstream words(r.out);
    for (std::string w; words >> w;) {
      if (w != "." && w != "..") out.push_back(w);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string GcRoot(const std::string& qube) {
    return storage::NixGcRootsDir(layout_) + "/" + qube;
  }

  // The whole story for one image kind.
  void ExactClosureAndNewGeneration(const std::string& image) {
    std::string env1 = Build("env", "v1");
    std::string other = Build("other", "v1");
    std::vector<std::string> closure1 = Closure(env1, root_ + "/closure-v1");
    ASSERT_EQ(closure1.size(), 2u) << "env and busybox";
    ASSERT_TRUE(WriteFileAtomic(config_, System(env1, root_ + "/closure-v1", image)));
    StartDaemon();

    // The template's software runs, and the store is exactly its closure.
    CliResult version = Cli({"run", "nx-work", "--", "cat", "/sw/share/version"});
    ASSERT_EQ(version.exit_code, 0) << version.err;
    EXPECT_EQ(version.out, "v1\n");
    EXPECT_EQ(StoreSeenBy("nx-work"), closure1);
    CliResult outside = Cli({"run", "nx-work", "--", "ls", other});
    EXPECT_NE(outside.exit_code, 0) << "a path outside the closure is visible: " << outside.out;
    // Read-only, even for the qube's root.
    CliResult write = Cli({"run", "nx-work", "--user", "root", "--", "sh", "-c",
                           "echo x > /nix/store/new || exit 3"});
    EXPECT_EQ(write.exit_code, 3) << write.out << write.err;

    // A GC root holds the closure while the qube runs.
    char target[PATH_MAX] = {};
    ASSERT_GT(::readlink(GcRoot("nx-work").c_str(), target, sizeof target - 1), 0);
    EXPECT_EQ(std::string(target), env1);
    CliResult roots = Run({"/usr/bin/nix-store", "-q", "--roots", env1});
    EXPECT_THAT(roots.out, HasSubstr(GcRoot("nx-work"))) << roots.err;

    // A new root: the running qube keeps its generation, its next start
    // gets the new one; the old one is collected once unused.
    std::string env2 = Build("env", "v2");
    std::vector<std::string> closure2 = Closure(env2, root_ + "/closure-v2");
    std::string next = root_ + "/next.toml";
    ASSERT_TRUE(WriteFileAtomic(next, System(env2, root_ + "/closure-v2", image)));
    CliResult applied = Cli({"apply", next, "--yes", "--restart-on-change", "never"});
    ASSERT_EQ(applied.exit_code, 0) << applied.err;
    EXPECT_EQ(Cli({"run", "nx-work", "--", "cat", "/sw/share/version"}).out, "v1\n");
    ASSERT_EQ(Cli({"stop", "nx-work"}).exit_code, 0);
    EXPECT_FALSE(std::filesystem::is_symlink(GcRoot("nx-work"))) << "GC root kept after stop";
    version = Cli({"run", "nx-work", "--", "cat", "/sw/share/version"});
    EXPECT_EQ(version.out, "v2\n") << version.err;
    EXPECT_EQ(StoreSeenBy("nx-work"), closure2);
    CliResult ls = Cli({"template", "ls", "--json"});
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    json doc = json::parse(ls.out);
    ASSERT_EQ(doc.size(), 1u);
    EXPECT_EQ(doc[0]["generation"], 2);
    EXPECT_EQ(doc[0]["generations"].size(), 1u) << "generation 1 not collected: " << ls.out;
    EXPECT_EQ(doc[0]["generations"][0]["nix"]["root"], env2) << ls.out;
    EXPECT_THAT(Cli({"template", "show", "nx-env"}).out,
                HasSubstr("nix root:      " + env2 + " (closure image: " + image + ")"));
    ASSERT_EQ(Cli({"stop", "nx-work"}).exit_code, 0);
  }
};

TEST_F(NixTemplateTest, ErofsImageShowsExactlyTheClosure) { ExactClosureAndNewGeneration("erofs"); }

TEST_F(NixTemplateTest, SquashfsImageShowsExactlyTheClosure) {
  ExactClosureAndNewGeneration("squashfs");
}

// services.tessera.restartOnChange: what an apply of a new root does to a
// running app qube of the template.
TEST_F(NixTemplateTest, RestartOnChangeDecidesWhenARunningQubeGetsANewRoot) {
  auto system_at = [&](const std::string& version) {
    std::string env = Build("env", version);
    Closure(env, root_ + "/closure-" + version);
    std::string file = root_ + "/system-" + version + ".toml";
    EXPECT_TRUE(WriteFileAtomic(file, System(env, root_ + "/closure-" + version, "erofs")));
    return file;
  };
  auto version_in = [&](const std::string& qube) {
    return Cli({"run", qube, "--", "cat", "/sw/share/version"}).out;
  };
  ASSERT_TRUE(WriteFileAtomic(config_, ReadFile(system_at("v1")).value_or("")));
  StartDaemon();
  ASSERT_EQ(version_in("nx-work"), "v1\n");

  // never (the module's default, Qubes semantics): it keeps running on v1.
  std::string v2 = system_at("v2");
  CliResult dry = Cli({"apply", v2, "--dry-run", "--restart-on-change", "never"});
  EXPECT_THAT(dry.out, HasSubstr("template_root"));
  EXPECT_THAT(dry.out, HasSubstr("nx-work (running: keeps its old settings until its next start)"));
  CliResult applied = Cli({"apply", v2, "--yes", "--restart-on-change", "never"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("restart pending nx-work: ok"));
  EXPECT_EQ(version_in("nx-work"), "v1\n");

  // if-idle, while a command runs in it: held back too.
  pid_t busy = SpawnCli({"run", "nx-work", "--", "sleep", "30"});
  for (int i = 0; i < 200 && List()["nx-work"].value("commands", 0) == 0; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(List()["nx-work"].value("commands", 0), 0);
  applied = Cli({"apply", system_at("v3"), "--yes", "--restart-on-change", "if-idle"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("restart pending nx-work"));
  EXPECT_EQ(version_in("nx-work"), "v1\n");
  ::kill(busy, SIGKILL);
  ::waitpid(busy, nullptr, 0);
  for (int i = 0; i < 250 && List()["nx-work"].value("commands", 0) != 0; ++i) {
    std::this_thread::sleep_for(20ms);
  }

  // if-idle with nothing running in it: restarted onto the new root.
  applied = Cli({"apply", system_at("v4"), "--yes", "--restart-on-change", "if-idle"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("start nx-work: ok"));
  EXPECT_EQ(version_in("nx-work"), "v4\n");

  // always (the CLI's default).
  applied = Cli({"apply", system_at("v5"), "--yes"});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_THAT(applied.out, HasSubstr("start nx-work: ok"));
  EXPECT_EQ(version_in("nx-work"), "v5\n");

  CliResult bad = Cli({"apply", v2, "--yes", "--restart-on-change", "sometimes"});
  EXPECT_NE(bad.exit_code, 0);
  ASSERT_EQ(Cli({"stop", "nx-work"}).exit_code, 0);
}

TEST_F(NixTemplateTest, ImageNoneBindsTheWholeStoreAndTheTemplateDoesNotRun) {
  std::string env = Build("env", "v1");
  std::string other = Build("other", "v1");
  Closure(env, root_ + "/closure");
  ASSERT_TRUE(WriteFileAtomic(config_, System(env, root_ + "/closure", "none")));
  // A GC root left by a qube that is not running (a host crash): the daemon
  // removes it at start.
  ASSERT_TRUE(storage::HoldNixRoot(layout_, "nx-ghost", env));
  StartDaemon();
  EXPECT_FALSE(std::filesystem::is_symlink(GcRoot("nx-ghost")));
  // The documented opt-in: the host's store, read-only, all of it.
  CliResult outside = Cli({"run", "nx-work", "--", "ls", "-d", other});
  EXPECT_EQ(outside.exit_code, 0) << outside.err;
  CliResult version = Cli({"run", "nx-work", "--", "cat", "/sw/share/version"});
  EXPECT_EQ(version.out, "v1\n") << version.err;

  CliResult start = Cli({"start", "nx-env"});
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_THAT(start.err, HasSubstr("built by Nix"));
  ASSERT_EQ(Cli({"stop", "nx-work"}).exit_code, 0);
}

TEST_F(NixTemplateTest, AClosureWithoutItsRootOrWithJunkIsRefusedNamingTheLine) {
  std::string env = Build("env", "v1");
  std::string other = Build("other", "v1");
  ASSERT_TRUE(WriteFileAtomic(root_ + "/wrong", other + "\n"));
  ASSERT_TRUE(WriteFileAtomic(root_ + "/junk", env + "\n/etc/passwd\n"));
  std::string system = System(env, root_ + "/wrong", "erofs");
  ASSERT_TRUE(WriteFileAtomic(config_, system));
  StartDaemon();
  CliResult r = Cli({"start", "nx-work"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not list the root " + env));
  KillDaemon(SIGTERM);
  ASSERT_TRUE(WriteFileAtomic(config_, System(env, root_ + "/junk", "erofs")));
  StartDaemon();
  r = Cli({"start", "nx-work"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(root_ + "/junk:2: not a store path"));
  EXPECT_FALSE(std::filesystem::exists(GcRoot("nx-work")));
}

}  // namespace
}  // namespace tessera::daemon_testing
