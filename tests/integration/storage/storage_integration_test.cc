// Storage against real kernel objects: mounts inside trees being removed,
// templates used as a root (chroot in a private mount namespace), the CLI
// binary, and (opt-in) a real debootstrap.

#include <fcntl.h>
#include <grp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/scope_guard.h"
#include "storage/idmap_internal.h"
#include "storage/storage.h"

namespace tessera::storage {
namespace {

using ::testing::HasSubstr;

class TempLayout {
 public:
  TempLayout() {
    char tmpl[] = "/tmp/tessera-storage-it-XXXXXX";
    base_ = ::mkdtemp(tmpl);
    layout_ = Layout{base_ + "/state", base_ + "/run"};
    std::filesystem::create_directories(layout_.state_dir);
    std::filesystem::create_directories(layout_.runtime_dir);
  }
  ~TempLayout() {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
    // Its ranges in the host registry are stale now: drop them.
    (void)internal::PruneIdRegistry(std::string(kHostIdRegistryDir));
  }
  const Layout& layout() const { return layout_; }
  const std::string& base() const { return base_; }

 private:
  std::string base_;
  Layout layout_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

struct CmdResult {
  int status = -1;
  std::string out;
};

// Runs a shell command line; stdout and stderr captured together.
CmdResult RunShell(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string Env(const Layout& l) {
  return "TESSERA_STATE_DIR=" + l.state_dir + " TESSERA_RUNTIME_DIR=" + l.runtime_dir + " ";
}

// ---- RemoveTree vs. mounts ---------------------------------------------------------

TEST(RemoveTreeMountTest, BindMountInsideFailsWithEbusyAndKeepsItsContent) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to bind-mount";
  TempLayout t;
  std::string victim = t.base() + "/victim";
  std::filesystem::create_directories(victim + "/deep");
  std::ofstream(victim + "/deep/precious") << "keep";
  std::string tree = t.base() + "/tree";
  std::string mnt = tree + "/a/b/mnt";
  std::filesystem::create_directories(mnt);
  ASSERT_EQ(::mount(victim.c_str(), mnt.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  ScopeGuard unmount([&] { ::umount2(mnt.c_str(), MNT_DETACH); });

  auto s = RemoveTree(tree);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errno_value(), EBUSY);
  EXPECT_THAT(s.error().message(), HasSubstr(mnt));
  EXPECT_EQ(Slurp(victim + "/deep/precious"), "keep");
  EXPECT_EQ(Slurp(mnt + "/deep/precious"), "keep");

  // The same when the tree itself is the mount point.
  auto self = RemoveTree(mnt);
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().errno_value(), EBUSY);
  EXPECT_EQ(Slurp(victim + "/deep/precious"), "keep");

  // After unmounting, the tree goes.
  ASSERT_EQ(::umount2(mnt.c_str(), 0), 0);
  unmount.Dismiss();
  EXPECT_TRUE(RemoveTree(tree));
  EXPECT_FALSE(Exists(tree));
  EXPECT_EQ(Slurp(victim + "/deep/precious"), "keep");
}

TEST(RemoveTreeMountTest, SameDeviceBindMountOfAFileIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to bind-mount";
  TempLayout t;
  std::string victim = t.base() + "/victim-file";
  std::ofstream(victim) << "keep";
  std::string tree = t.base() + "/tree";
  std::filesystem::create_directories(tree);
  std::string target = tree + "/file";
  std::ofstream(target) << "";
  ASSERT_EQ(::mount(victim.c_str(), target.c_str(), nullptr, MS_BIND, nullptr), 0);
  ScopeGuard unmount([&] { ::umount2(target.c_str(), MNT_DETACH); });
  auto s = RemoveTree(tree);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errno_value(), EBUSY);
  EXPECT_EQ(Slurp(victim), "keep");
}

// ---- templates as a root -------------------------------------------------------------

// Runs argv in a child chrooted into `root` inside a private mount namespace,
// after binding each of `binds` (host path) read-only at the same place. The
// namespace, and with it every mount, dies with the child.
CmdResult RunChrooted(const std::string& root, const std::vector<std::string>& binds,
                      const std::string& shell_cmd) {
  int pipe_fds[2];
  CmdResult r;
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(120);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(121);
    for (const auto& b : binds) {
      std::string dst = root + b;
      if (::mount(b.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) ::_exit(122);
      if (::mount(nullptr, dst.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
        ::_exit(123);
      }
    }
    if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0) ::_exit(124);
    ::execl("/bin/sh", "sh", "-c", shell_cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(TemplateRootTest, BusyboxTemplateWorksAsARoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chroot";
  TempLayout t;
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", {}));
  CmdResult r = RunChrooted(t.layout().TemplateRoot("bb"), {},
                            "echo ok; ls /usr/bin/env; id -un; id user; cat /etc/hostname");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "ok\n/usr/bin/env\nroot\nuid=1000(user) gid=1000(user) groups=1000(user)\n"
                   "localhost\n");
}

TEST(TemplateRootTest, HostTemplateRunsHostBinariesFromABoundUsr) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chroot and bind-mount";
  TempLayout t;
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kHost;
  auto info = BuildTemplate(t.layout(), "hostish", opts);
  ASSERT_TRUE(info) << info.error().ToString();
  std::string root = t.layout().TemplateRoot("hostish");
  // Dynamically linked host programs (ls, id, awk through /etc/alternatives).
  CmdResult r = RunChrooted(root, info->host_ro_binds,
                            "ls / >/dev/null && id -un && echo x | awk '{print \"awk-\" $1}' && "
                            "touch /usr/should-fail 2>/dev/null || echo usr-ro");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("root\n"));
  EXPECT_THAT(r.out, HasSubstr("awk-x\n"));
  EXPECT_THAT(r.out, HasSubstr("usr-ro\n"));
  EXPECT_FALSE(Exists("/usr/should-fail"));
  // The template tree itself holds no host files after the namespace is gone.
  EXPECT_TRUE(std::filesystem::is_empty(root + "/usr"));
}

// ---- host users cannot reach qube-made files ------------------------------------------

// stat() and open() of `path` as uid/gid 65534 in a forked child; returns the
// errno of the first that fails, 0 if both succeed, -1 if the child broke.
int ErrnoAsNobody(const std::string& path) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(255);
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) ::_exit(errno);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) ::_exit(errno);
    ::_exit(0);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  int code = WEXITSTATUS(status);
  return code == 255 ? -1 : code;
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Gap 1 of issue 4: a template qube's root is idmapped, so a setuid file it
// plants is host-root setuid on disk. S/templates and S/qubes are 0700 root,
// so no host user can reach (let alone run) such a file.
TEST(StatePermissionTest, HostUsersCannotReachTemplateOrQubeFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged uid";
  TempLayout t;
  // Everything above S is open to all, so only S's own layout can stop nobody.
  ASSERT_EQ(::chmod(t.base().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(t.layout().state_dir.c_str(), 0755), 0);
  ASSERT_TRUE(BuildTemplate(t.layout(), "t1", {}));
  // What `cp /bin/busybox /bin/suidsh; chmod 4755 /bin/suidsh` in the qube leaves.
  std::string suid = t.layout().TemplateRoot("t1") + "/bin/suidsh";
  std::filesystem::copy_file(t.layout().TemplateRoot("t1") + "/bin/busybox", suid);
  ASSERT_EQ(::chmod(suid.c_str(), 04755), 0);
  ASSERT_EQ(ErrnoAsNobody(t.layout().state_dir), 0);  // the test itself is sound
  EXPECT_EQ(ErrnoAsNobody(suid), EACCES);
  EXPECT_EQ(ErrnoAsNobody(t.layout().TemplateRoot("t1")), EACCES);
  EXPECT_EQ(ModeOf(t.layout().state_dir + "/templates"), 0700u);
  EXPECT_EQ(ModeOf(t.layout().TemplateDir("t1")), 0700u);

  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "q"));
  std::string file = t.layout().PrivateVolume("q") + "/rw/f";
  std::ofstream(file) << "x";
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  EXPECT_EQ(ErrnoAsNobody(file), EACCES);
  EXPECT_EQ(ModeOf(t.layout().state_dir + "/qubes"), 0700u);
  EXPECT_EQ(ModeOf(t.layout().QubeDir("q")), 0700u);
}

// Directories an older version made 0755 are tightened when the layout is used.
TEST(StatePermissionTest, WideDirectoriesOfOlderVersionsAreTightened) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged uid";
  TempLayout t;
  ASSERT_EQ(::chmod(t.base().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(t.layout().state_dir.c_str(), 0755), 0);
  const std::string& s = t.layout().state_dir;
  std::vector<std::string> dirs = {s + "/templates", s + "/templates/old", s + "/qubes",
                                   s + "/qubes/oldq"};
  for (const std::string& d : dirs) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    ASSERT_EQ(::chmod(d.c_str(), 0755), 0) << d;
  }
  std::ofstream(s + "/templates/old/file") << "x";
  ASSERT_EQ(ErrnoAsNobody(s + "/templates/old/file"), 0);

  ASSERT_TRUE(BuildTemplate(t.layout(), "fresh", {}));
  EXPECT_EQ(ModeOf(s + "/templates"), 0700u);
  EXPECT_EQ(ModeOf(s + "/templates/old"), 0700u);
  EXPECT_EQ(ErrnoAsNobody(s + "/templates/old/file"), EACCES);

  ASSERT_TRUE(SecureStateDirs(t.layout()));
  EXPECT_EQ(ModeOf(s + "/qubes"), 0700u);
  EXPECT_EQ(ModeOf(s + "/qubes/oldq"), 0700u);
}

// ---- standalone roots -------------------------------------------------------------

// Runs shell_cmd with `root` as "/" in a new user namespace whose uid/gid 0..65535
// are host base..base+65535 (a qube's map), with no idmapped mount: what the
// cell does with a standalone root. The root is opened by host root first
// (S/qubes is 0700), then entered with fchdir + chroot.
CmdResult RunInQubeUserns(const std::string& root, uid_t base, const std::string& shell_cmd) {
  CmdResult r;
  int out[2];
  int go[2];
  int ready[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0 ||
      ::pipe2(ready, O_CLOEXEC) != 0) {
    return r;
  }
  int root_fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    if (::unshare(CLONE_NEWUSER) != 0) ::_exit(120);
    char c = 'u';
    if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1 || c != 'g') ::_exit(121);
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) ::_exit(122);
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(123);
    if (::fchdir(root_fd) != 0 || ::chroot(".") != 0 || ::chdir("/") != 0) ::_exit(124);
    ::execl("/bin/sh", "sh", "-c", shell_cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(root_fd);
  ::close(out[1]);
  char c = 0;
  bool mapped = false;
  if (::read(ready[0], &c, 1) == 1) {
    std::string map = "0 " + std::to_string(base) + " 65536\n";
    std::string proc = "/proc/" + std::to_string(pid);
    std::ofstream(proc + "/uid_map") << map;
    std::ofstream(proc + "/gid_map") << map;
    mapped = true;
  }
  c = mapped ? 'g' : 'x';
  (void)!::write(go[1], &c, 1);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  for (int fd : {out[0], go[0], go[1], ready[0], ready[1]}) ::close(fd);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Gap 2 of issue 4: a standalone root is shifted on disk, so a plain (not
// idmapped) root in the qube's user namespace shows it root-owned; what the
// qube writes, setuid included, belongs to its range on the host.
TEST(StandaloneRootIntegrationTest, ShiftedRootIsRootOwnedInsideAndQubeOwnedOutside) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for user namespaces with a foreign map";
  TempLayout t;
  ASSERT_TRUE(BuildTemplate(t.layout(), "tpl", {}));
  IdRange ids = *AllocateIdRange(t.layout(), "solo");
  auto made = EnsureStandaloneRoot(t.layout(), "solo", "tpl", ids);
  ASSERT_TRUE(made) << made.error().ToString();
  std::string root = t.layout().StandaloneRoot("solo");
  CmdResult r = RunInQubeUserns(
      root, ids.base,
      "stat -c '%u:%g %a' / /bin/busybox /etc/passwd; cp /bin/busybox /bin/suidsh && "
      "chmod 4755 /bin/suidsh && echo persisted > /etc/motd && echo done");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "0:0 755\n0:0 755\n0:0 644\ndone\n");
  struct stat st {};
  ASSERT_EQ(::lstat((root + "/bin/suidsh").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ids.base);  // setuid for the qube's root only, never host root
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  // A second "start" keeps what the qube wrote.
  ASSERT_TRUE(EnsureStandaloneRoot(t.layout(), "solo", "tpl", ids));
  r = RunInQubeUserns(root, ids.base, "cat /etc/motd; stat -c '%u' /etc/motd");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "persisted\n0\n");
  ASSERT_EQ(::lstat((root + "/etc/motd").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ids.base);
  // And no host user can reach it.
  ASSERT_EQ(::chmod(t.base().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(t.layout().state_dir.c_str(), 0755), 0);
  EXPECT_EQ(ErrnoAsNobody(root + "/bin/suidsh"), EACCES);
  ASSERT_TRUE(DestroyQubeStorage(t.layout(), "solo"));
  EXPECT_FALSE(Exists(t.layout().QubeDir("solo")));
}

// ---- CLI ----------------------------------------------------------------------------

TEST(TemplateCliTest, BuildListShowRemove) {
  TempLayout t;
  std::string cli = std::string(TESSERA_CLI);
  CmdResult r = RunShell(Env(t.layout()) + cli + " template build bb --from busybox");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("template bb built from busybox"));
  EXPECT_TRUE(Exists(t.layout().TemplateRoot("bb") + "/bin/busybox"));

  std::string src = t.base() + "/src";
  std::filesystem::create_directories(src + "/etc");
  std::ofstream(src + "/etc/motd") << "hi";
  r = RunShell(Env(t.layout()) + cli + " template build imported --from " + src);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(Slurp(t.layout().TemplateRoot("imported") + "/etc/motd"), "hi");

  r = RunShell(Env(t.layout()) + cli + " template list");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("bb "));
  EXPECT_THAT(r.out, HasSubstr("dir:" + src));

  r = RunShell(Env(t.layout()) + cli + " template list --json 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  auto doc = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_array()) << r.out;
  ASSERT_EQ(doc.size(), 2u);
  EXPECT_EQ(doc[0]["name"], "bb");
  EXPECT_EQ(doc[1]["built_from"], "dir:" + src);

  r = RunShell(Env(t.layout()) + cli + " template show bb");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("built from:    busybox"));
  EXPECT_THAT(r.out, HasSubstr(t.layout().TemplateRoot("bb")));

  // Errors: existing without --replace, bad name, missing template, usage.
  r = RunShell(Env(t.layout()) + cli + " template build bb --from busybox");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("--replace"));
  r = RunShell(Env(t.layout()) + cli + " template build bb --from busybox --replace");
  EXPECT_EQ(r.status, 0) << r.out;
  r = RunShell(Env(t.layout()) + cli + " template build ../x --from busybox");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("template name '../x'"));
  r = RunShell(Env(t.layout()) + cli + " template build bb2 --from " + t.layout().TemplateRoot("bb"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("inside the state directory"));
  r = RunShell(Env(t.layout()) + cli + " template build t3 --from nosuch");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("unknown source 'nosuch': expected busybox, debootstrap, host or "
                               "an existing directory"));
  r = RunShell(Env(t.layout()) + cli + " template build t3 --from " + src + "/etc/motd");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("unknown source '" + src + "/etc/motd'"));
  EXPECT_FALSE(Exists(t.layout().TemplateDir("t3")));
  r = RunShell(Env(t.layout()) + cli + " template show nosuch");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("does not exist"));
  r = RunShell(Env(t.layout()) + cli + " template build bb");
  EXPECT_EQ(r.status, 2) << r.out;
  for (const char* verb : {"build", "list", "show", "remove"}) {
    r = RunShell(cli + " template " + verb + " --help");
    EXPECT_EQ(r.status, 0) << verb;
    EXPECT_THAT(r.out, HasSubstr("Usage")) << verb;
  }

  r = RunShell(Env(t.layout()) + cli + " template remove bb");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_FALSE(Exists(t.layout().TemplateDir("bb")));
  r = RunShell(Env(t.layout()) + cli + " template remove bb");
  EXPECT_EQ(r.status, 1);
}

// ---- debootstrap (opt-in: slow, needs network or a local mirror) ---------------------

TEST(DebootstrapTemplateTest, BuildsARealDebian) {
  const char* opt = std::getenv("TESSERA_TEST_DEBOOTSTRAP");
  if (opt == nullptr || std::string(opt) != "1") {
    GTEST_SKIP() << "set TESSERA_TEST_DEBOOTSTRAP=1 to run a real debootstrap (minutes, network)";
  }
  if (::geteuid() != 0) GTEST_SKIP() << "debootstrap needs root";
  TempLayout t;
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kDebootstrap;
  if (const char* mirror = std::getenv("TESSERA_TEST_DEBOOTSTRAP_MIRROR")) opts.mirror = mirror;
  auto info = BuildTemplate(t.layout(), "debian", opts);
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->built_from, "debootstrap");
  EXPECT_THAT(info->source, HasSubstr("suite=bookworm"));
  std::string root = t.layout().TemplateRoot("debian");
  EXPECT_THAT(Slurp(root + "/etc/debian_version"), ::testing::StartsWith("12"));
  CmdResult r = RunChrooted(root, {}, "dpkg -l coreutils | tail -1; echo ok");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("ok\n"));
}

}  // namespace
}  // namespace tessera::storage
