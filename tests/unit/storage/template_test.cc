#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "storage/storage.h"
#include "storage/template_internal.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using ::testing::HasSubstr;
using testing::Exists;
using testing::LStat;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

std::string ReadLink(const std::string& path) {
  std::error_code ec;
  return std::filesystem::read_symlink(path, ec).string();
}

// Runs a shell command line and returns its stdout.
std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool HiddenLeftovers(const Layout& layout) {
  for (const auto& e : std::filesystem::directory_iterator(layout.state_dir + "/templates")) {
    std::string n = e.path().filename().string();
    if (n[0] == '.' && n.find(".lock") == std::string::npos) return true;
  }
  return false;
}

TEST(BusyboxTemplateTest, BuildsARunnableTree) {
  TempLayout t;
  auto info = BuildTemplate(t.layout(), "bb", {});
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->name, "bb");
  EXPECT_EQ(info->built_from, "busybox");
  EXPECT_TRUE(info->host_ro_binds.empty());
  std::string root = t.layout().TemplateRoot("bb");
  struct stat bb = LStat(root + "/bin/busybox");
  EXPECT_TRUE(S_ISREG(bb.st_mode));
  EXPECT_EQ(bb.st_mode & 07777, 0755u);
  EXPECT_EQ(bb.st_uid, ::geteuid());
  EXPECT_EQ(ReadLink(root + "/bin/sh"), "busybox");
  EXPECT_EQ(ReadLink(root + "/usr/bin/env"), "../../bin/busybox");
  EXPECT_EQ(ReadLink(root + "/sbin/ifconfig"), "../bin/busybox");
  // Every applet the binary lists is there, in its directory.
  std::string list = Capture(root + "/bin/busybox --list-full");
  int applets = 0;
  for (size_t pos = 0, nl; (nl = list.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    std::string rel = list.substr(pos, nl - pos);
    if (rel.find('/') == std::string::npos) continue;
    EXPECT_TRUE(Exists(root + "/" + rel)) << rel;
    ++applets;
  }
  EXPECT_GT(applets, 100);
  // Applets run on the host straight from the tree.
  EXPECT_EQ(Capture(root + "/bin/sh -c 'echo ok'"), "ok\n");
  EXPECT_EQ(Capture(root + "/usr/bin/basename /a/b/c"), "c\n");
  // Minimal /etc and mount points.
  EXPECT_THAT(Slurp(root + "/etc/passwd"), HasSubstr("root:x:0:0:"));
  EXPECT_THAT(Slurp(root + "/etc/passwd"), HasSubstr("user:x:1000:1000:"));
  EXPECT_THAT(Slurp(root + "/etc/group"), HasSubstr("user:x:1000:"));
  EXPECT_TRUE(Exists(root + "/etc/hostname"));
  EXPECT_TRUE(Exists(root + "/etc/profile"));
  EXPECT_THAT(Slurp(root + "/etc/shells"), HasSubstr("/bin/sh"));
  for (const char* d : {"proc", "sys", "dev", "tmp", "run", "home", "rw", "mnt", "var/tmp", "root",
                        "etc/tessera-rpc"}) {
    struct stat st = LStat(root + "/" + d);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << d;
    EXPECT_TRUE(std::filesystem::is_empty(root + "/" + d)) << d;
  }
  EXPECT_EQ(LStat(root + "/tmp").st_mode & 07777, 01777u);
  EXPECT_EQ(LStat(root + "/root").st_mode & 07777, 0700u);
  // template.json records the origin.
  auto doc = nlohmann::json::parse(Slurp(t.layout().TemplateDir("bb") + "/template.json"));
  EXPECT_EQ(doc["name"], "bb");
  EXPECT_EQ(doc["built_from"], "busybox");
  EXPECT_EQ(doc["format"], 1);
  EXPECT_THAT(doc["source"].get<std::string>(), HasSubstr("busybox"));
  EXPECT_THAT(doc["created"].get<std::string>(), ::testing::MatchesRegex(
                                                     "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"));
  auto read = ReadTemplateInfo(t.layout(), "bb");
  ASSERT_TRUE(read) << read.error().ToString();
  EXPECT_EQ(read->created, info->created);
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
}

TEST(BusyboxTemplateTest, ExistingNeedsReplaceAndReplaceSwaps) {
  TempLayout t;
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", {}));
  Spit(t.layout().TemplateRoot("bb") + "/marker", "old");
  auto again = BuildTemplate(t.layout(), "bb", {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().errno_value(), EEXIST);
  EXPECT_THAT(again.error().message(), HasSubstr("--replace"));
  EXPECT_TRUE(Exists(t.layout().TemplateRoot("bb") + "/marker"));
  TemplateBuildOptions opts;
  opts.replace = true;
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", opts));
  EXPECT_FALSE(Exists(t.layout().TemplateRoot("bb") + "/marker"));
  EXPECT_TRUE(Exists(t.layout().TemplateRoot("bb") + "/bin/busybox"));
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
}

TEST(BusyboxTemplateTest, FailedBuildLeavesNothing) {
  TempLayout t;
  TemplateBuildOptions failing;
  failing.before_publish = [] {
    return Status(Err(Error("template build failed on purpose", EIO)));
  };
  auto r = BuildTemplate(t.layout(), "doomed", failing);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr("build template doomed"));
  EXPECT_FALSE(Exists(t.layout().TemplateDir("doomed")));
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
  // A failure while replacing keeps the old template intact.
  ASSERT_TRUE(BuildTemplate(t.layout(), "keep", {}));
  TemplateBuildOptions opts = failing;
  opts.replace = true;
  EXPECT_FALSE(BuildTemplate(t.layout(), "keep", opts));
  EXPECT_TRUE(ReadTemplateInfo(t.layout(), "keep"));
  EXPECT_TRUE(Exists(t.layout().TemplateRoot("keep") + "/bin/busybox"));
  // A bad source fails the same way.
  TemplateBuildOptions bad;
  bad.busybox = "/bin/ls";  // dynamically linked
  auto dyn = BuildTemplate(t.layout(), "dyn", bad);
  ASSERT_FALSE(dyn);
  EXPECT_THAT(dyn.error().ToString(), HasSubstr("dynamically linked"));
  EXPECT_FALSE(Exists(t.layout().TemplateDir("dyn")));
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
}

TEST(BusyboxTemplateTest, LeftoversOfACrashedBuildAreCleanedAndNeverListed) {
  TempLayout t;
  std::string crashed = t.layout().state_dir + "/templates/.bb.tmp-AbC123";
  std::filesystem::create_directories(crashed + "/root/bin");
  Spit(crashed + "/root/bin/half", "x");
  auto list = ListTemplates(t.layout());
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", {}));
  EXPECT_FALSE(Exists(crashed));
  list = ListTemplates(t.layout());
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "bb");
}

TEST(TemplateTest, RejectsBadNames) {
  TempLayout t;
  for (const char* bad : {"../x", "", ".hidden", "a/b", "9lives"}) {
    auto r = BuildTemplate(t.layout(), bad, {});
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().message(), HasSubstr("template name"));
  }
  EXPECT_FALSE(ReadTemplateInfo(t.layout(), "../../etc"));
}

TEST(TemplateTest, RemoveTemplate) {
  TempLayout t;
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", {}));
  ASSERT_TRUE(RemoveTemplate(t.layout(), "bb"));
  EXPECT_FALSE(Exists(t.layout().TemplateDir("bb")));
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
  auto again = RemoveTemplate(t.layout(), "bb");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().errno_value(), ENOENT);
}

TEST(TemplateTest, ReadTemplateInfoNamesBadFields) {
  TempLayout t;
  std::string dir = t.layout().TemplateDir("x");
  std::filesystem::create_directories(dir);
  Spit(dir + "/template.json", R"({"name":"x","built_from":"busybox"})");
  auto r = ReadTemplateInfo(t.layout(), "x");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("template.json: missing field \"created\""));
  Spit(dir + "/template.json",
       R"({"name":"x","built_from":"host","created":"2026-01-01T00:00:00Z","host_ro_binds":["usr"]})");
  r = ReadTemplateInfo(t.layout(), "x");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("host_ro_binds[0]"));
  Spit(dir + "/template.json",
       R"({"name":"y","built_from":"host","created":"2026-01-01T00:00:00Z"})");
  EXPECT_FALSE(ReadTemplateInfo(t.layout(), "x"));
  auto list = ListTemplates(t.layout());
  ASSERT_FALSE(list);  // a broken template is reported, not silently hidden
  EXPECT_THAT(list.error().message(), HasSubstr("does not match"));
}

// ---- host ---------------------------------------------------------------------

TEST(HostTemplateTest, SkeletonAroundAHostUsr) {
  TempLayout t;
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kHost;
  auto info = BuildTemplate(t.layout(), "hostish", opts);
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->built_from, "host");
  EXPECT_EQ(info->host_ro_binds, std::vector<std::string>{"/usr"});
  std::string root = t.layout().TemplateRoot("hostish");
  EXPECT_TRUE(S_ISDIR(LStat(root + "/usr").st_mode));
  EXPECT_TRUE(std::filesystem::is_empty(root + "/usr"));
  EXPECT_EQ(ReadLink(root + "/bin"), "usr/bin");
  EXPECT_EQ(ReadLink(root + "/sbin"), "usr/sbin");
  EXPECT_EQ(ReadLink(root + "/lib"), "usr/lib");
  EXPECT_EQ(ReadLink(root + "/lib64"), "usr/lib64");
  EXPECT_THAT(Slurp(root + "/etc/passwd"), HasSubstr("user:x:1000:1000:"));
  if (Exists("/etc/ld.so.cache")) {
    EXPECT_EQ(Slurp(root + "/etc/ld.so.cache"), Slurp("/etc/ld.so.cache"));
  }
  for (const char* d : {"proc", "dev", "tmp", "home", "rw", "etc/tessera-rpc"}) {
    EXPECT_TRUE(S_ISDIR(LStat(root + "/" + d).st_mode)) << d;
  }
  auto read = ReadTemplateInfo(t.layout(), "hostish");
  ASSERT_TRUE(read);
  EXPECT_EQ(read->host_ro_binds, std::vector<std::string>{"/usr"});
}

// ---- directory import ---------------------------------------------------------

TEST(DirectoryTemplateTest, CopiesTreeWithSymlinksAndModes) {
  TempLayout t;
  std::string src = t.base() + "/src";
  std::filesystem::create_directories(src + "/bin");
  std::filesystem::create_directories(src + "/etc/ro");
  Spit(src + "/bin/tool", "#!/bin/sh\necho tool\n");
  ::chmod((src + "/bin/tool").c_str(), 0751);
  Spit(src + "/etc/ro/conf", "c");
  ::chmod((src + "/etc/ro").c_str(), 0555);
  std::filesystem::create_symlink("../bin/tool", src + "/etc/link");
  std::filesystem::create_symlink("/nonexistent/abs", src + "/dangling");
  ASSERT_EQ(::mkfifo((src + "/fifo").c_str(), 0640), 0);
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kDirectory;
  opts.directory = src + "/";
  auto info = BuildTemplate(t.layout(), "imported", opts);
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->built_from, "dir:" + src);
  std::string root = t.layout().TemplateRoot("imported");
  EXPECT_EQ(Slurp(root + "/bin/tool"), "#!/bin/sh\necho tool\n");
  EXPECT_EQ(LStat(root + "/bin/tool").st_mode & 07777, 0751u);
  EXPECT_EQ(LStat(root + "/etc/ro").st_mode & 07777, 0555u);
  EXPECT_EQ(Slurp(root + "/etc/ro/conf"), "c");
  EXPECT_EQ(ReadLink(root + "/etc/link"), "../bin/tool");
  EXPECT_EQ(ReadLink(root + "/dangling"), "/nonexistent/abs");
  EXPECT_TRUE(S_ISFIFO(LStat(root + "/fifo").st_mode));
  EXPECT_EQ(LStat(root + "/bin/tool").st_mtim.tv_sec, LStat(src + "/bin/tool").st_mtim.tv_sec);
  // The tree had no user database: the qube user is added (to the copy).
  EXPECT_THAT(Slurp(root + "/etc/passwd"), HasSubstr("user:x:1000:1000:user:/home/user:/bin/sh\n"));
  EXPECT_FALSE(std::filesystem::exists(src + "/etc/passwd"));
  ::chmod((src + "/etc/ro").c_str(), 0755);
  ::chmod((root + "/etc/ro").c_str(), 0755);
}

TEST(TemplateInternalTest, QubeUserIsAddedOnlyWhereMissing) {
  auto add =
      internal::MissingQubeUser("root:x:0:0::/root:/bin/sh", "root:x:0:\n", "root:*:1::::::\n");
  EXPECT_EQ(add.passwd, "\nuser:x:1000:1000:user:/home/user:/bin/sh\n");
  EXPECT_EQ(add.group, "user:x:1000:\n");
  EXPECT_EQ(add.shadow, "user:*:1::::::\n");
  auto has = internal::MissingQubeUser("user:x:1000:1000::/home/user:/bin/sh\n", "", "");
  EXPECT_EQ(has.passwd, "");
  // uid 1000 is someone else's: not a second name for it.
  auto taken = internal::MissingQubeUser("debian:x:1000:1000::/home/debian:/bin/sh\n", "", "");
  EXPECT_EQ(taken.passwd, "");
}

TEST(DirectoryTemplateTest, UserOwnedTreeBecomesRootOwnedWithoutSetuid) {
  if (::geteuid() != 0) GTEST_SKIP() << "ownership normalisation needs root";
  TempLayout t;
  std::string src = t.base() + "/mine";
  std::filesystem::create_directories(src + "/d");
  Spit(src + "/d/suid", "x");
  ::chmod((src + "/d/suid").c_str(), 04755);
  ASSERT_EQ(::chown(src.c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chown((src + "/d").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chown((src + "/d/suid").c_str(), 1000, 1000), 0);
  ::chmod((src + "/d/suid").c_str(), 04755);  // chown cleared it
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kDirectory;
  opts.directory = src;
  ASSERT_TRUE(BuildTemplate(t.layout(), "mine", opts));
  std::string root = t.layout().TemplateRoot("mine");
  struct stat st = LStat(root + "/d/suid");
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(LStat(root + "/d").st_uid, 0u);
}

TEST(DirectoryTemplateTest, RootOwnedTreeKeepsSystemIds) {
  if (::geteuid() != 0) GTEST_SKIP() << "ownership needs root";
  TempLayout t;
  std::string src = t.base() + "/rootfs";
  std::filesystem::create_directories(src + "/etc");
  Spit(src + "/etc/shadow", "s");
  ASSERT_EQ(::chown((src + "/etc/shadow").c_str(), 0, 42), 0);
  Spit(src + "/etc/huge", "h");
  ASSERT_EQ(::chown((src + "/etc/huge").c_str(), 100000, 100000), 0);
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kDirectory;
  opts.directory = src;
  ASSERT_TRUE(BuildTemplate(t.layout(), "rootfs", opts));
  std::string root = t.layout().TemplateRoot("rootfs");
  EXPECT_EQ(LStat(root + "/etc/shadow").st_gid, 42u);
  EXPECT_EQ(LStat(root + "/etc/huge").st_uid, 0u);  // not mappable into a qube
}

TEST(DirectoryTemplateTest, RefusesStateDirAndNonDirectories) {
  TempLayout t;
  ASSERT_TRUE(BuildTemplate(t.layout(), "bb", {}));
  TemplateBuildOptions opts;
  opts.source = TemplateSource::kDirectory;
  opts.directory = t.layout().TemplateRoot("bb");
  auto inside = BuildTemplate(t.layout(), "copy", opts);
  ASSERT_FALSE(inside);
  EXPECT_THAT(inside.error().ToString(), HasSubstr("inside the state directory"));
  opts.directory = t.base();  // contains the state dir
  auto outer = BuildTemplate(t.layout(), "copy", opts);
  ASSERT_FALSE(outer);
  EXPECT_THAT(outer.error().ToString(), HasSubstr("contains the state directory"));
  opts.directory = t.base() + "/missing";
  EXPECT_FALSE(BuildTemplate(t.layout(), "copy", opts));
  Spit(t.base() + "/file", "x");
  opts.directory = t.base() + "/file";
  EXPECT_FALSE(BuildTemplate(t.layout(), "copy", opts));
  EXPECT_FALSE(Exists(t.layout().TemplateDir("copy")));
  EXPECT_FALSE(HiddenLeftovers(t.layout()));
}

// ---- parsers ------------------------------------------------------------------

TEST(TemplateInternalTest, StaticElfCheck) {
  EXPECT_TRUE(internal::CheckStaticElf("/usr/bin/busybox"));
  EXPECT_FALSE(internal::CheckStaticElf("/bin/ls"));
  EXPECT_FALSE(internal::CheckStaticElf("/etc/passwd"));
}

TEST(TemplateInternalTest, AppletListParsing) {
  std::string many;
  for (int i = 0; i < 12; ++i) many += "usr/bin/a" + std::to_string(i) + "\n";
  auto r = internal::ParseAppletList("linuxrc\nbin/sh\nsbin/init\netc/evil\n../x/y\nbin/..\n" + many);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 14u);
  EXPECT_EQ((*r)[0].dir, "bin");
  EXPECT_EQ((*r)[0].name, "sh");
  EXPECT_EQ((*r)[1].dir, "sbin");
  EXPECT_FALSE(internal::ParseAppletList("bin/sh\n"));
}

TEST(TemplateInternalTest, AptMirrorParsing) {
  EXPECT_EQ(internal::ParseAptMirror("Types: deb\nURIs: http://deb.debian.org/debian-security\n"
                                     "\nTypes: deb\nURIs: http://mirror.example/debian/\n"),
            "http://mirror.example/debian");
  EXPECT_EQ(internal::ParseAptMirror("# c\ndeb [arch=amd64 signed-by=/x] https://m.example/d bookworm main\n"),
            "https://m.example/d");
  EXPECT_EQ(internal::ParseAptMirror("deb-src http://x/y bookworm main\n"), "");
}

}  // namespace
}  // namespace tessera::storage
