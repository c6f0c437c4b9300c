// PrepareQubeStorage / ListQubeStorage: the one entry point before a backend
// starts a qube (as root; it chowns into id ranges).

#include "storage/qube_storage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "storage/generations.h"
#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Exists;
using testing::LStat;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

// Every path below `dir`, relative to it.
std::set<std::string> Tree(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    out.insert(std::filesystem::relative(e.path(), dir).string());
  }
  return out;
}

// A request spelled out in full (-Wextra warns of designated initialisers
// that leave fields out).
QubeStorageRequest Req(std::string qube, RootSource root, std::string template_name,
                       bool disposable = false, std::string snapshot_from = "") {
  return {.qube = std::move(qube),
          .root = root,
          .template_name = std::move(template_name),
          .disposable = disposable,
          .snapshot_from = std::move(snapshot_from)};
}
TemplateBuildOptions HostTemplate() {
  TemplateBuildOptions options;
  options.source = TemplateSource::kHost;
  return options;
}
constexpr RootSource kShared = RootSource::kTemplateShared;

class QubeStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "preparing storage chowns into id ranges: needs root";
    auto built = BuildTemplate(layout(), "tpl", {});
    ASSERT_TRUE(built) << built.error().ToString();
  }
  const Layout& layout() const { return t_.layout(); }
  Result<PreparedStorage> Prepare(QubeStorageRequest request) {
    return PrepareQubeStorage(layout(), request);
  }
  TempLayout t_;
};

TEST_F(QubeStorageTest, AppQubeSharesTheTemplateRootAndGetsItsOwnVolume) {
  auto p = Prepare(Req("work", kShared, "tpl"));
  ASSERT_TRUE(p) << p.error().ToString();
  // The template's current generation, recorded as used by the qube.
  EXPECT_EQ(p->root_path, layout().TemplateDir("tpl") + "/gen/1");
  EXPECT_EQ(p->generation, 1u);
  EXPECT_TRUE(p->changes_path.empty());
  EXPECT_TRUE(Exists(layout().runtime_dir + "/generations/tpl/work@1"));
  EXPECT_EQ(p->private_volume, layout().PrivateVolume("work"));
  EXPECT_EQ(p->ids, *LookupIdRange(layout(), "work"));
  EXPECT_TRUE(p->host_ro_binds.empty());
  EXPECT_EQ(LStat(p->private_volume).st_uid, p->ids.base);
  EXPECT_EQ(LStat(p->private_volume + "/home/user").st_uid, p->ids.base + 1000);
  // The second preparation finds everything made.
  auto again = Prepare(Req("work", kShared, "tpl"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ids, p->ids);
}

TEST_F(QubeStorageTest, HostBindsComeFromTheTemplate) {
  ASSERT_TRUE(BuildTemplate(layout(), "host", HostTemplate()));
  auto p = Prepare(Req("work", kShared, "host"));
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_THAT(p->host_ro_binds, ElementsAre("/usr"));
}

TEST_F(QubeStorageTest, TemplateQubeUsesItsTemplateTree) {
  auto p = Prepare(Req("tpl", RootSource::kTemplateOwn, "tpl"));
  ASSERT_TRUE(p) << p.error().ToString();
  // Its generation below its persistent changes (generations.h).
  EXPECT_EQ(p->root_path, layout().TemplateDir("tpl") + "/gen/1");
  EXPECT_EQ(p->changes_path, layout().TemplateDir("tpl") + "/changes");
  EXPECT_TRUE(Exists(p->changes_path + "/upper"));
  EXPECT_TRUE(Exists(p->changes_path + "/work"));
  EXPECT_TRUE(Exists(layout().PrivateVolume("tpl") + "/home/user"));
  // The template tree stays host-root owned (it is idmapped, never shifted).
  EXPECT_EQ(LStat(p->root_path + "/bin/busybox").st_uid, 0u);
}

TEST_F(QubeStorageTest, StandaloneRootIsMadeAtTheFirstStartShifted) {
  auto p = Prepare(Req("solo", RootSource::kStandalone, "tpl"));
  ASSERT_TRUE(p) << p.error().ToString();
  EXPECT_EQ(p->root_path, layout().StandaloneRoot("solo"));
  EXPECT_EQ(LStat(p->root_path + "/bin/busybox").st_uid, p->ids.base);
  // Made once: a file the qube wrote survives the next preparation.
  Spit(p->root_path + "/etc/mine", "x");
  ASSERT_TRUE(Prepare(Req("solo", RootSource::kStandalone, "tpl")));
  EXPECT_TRUE(Exists(p->root_path + "/etc/mine"));
  // From busybox, without a template.
  auto bb = Prepare(Req("bare", RootSource::kStandalone, ""));
  ASSERT_TRUE(bb) << bb.error().ToString();
  EXPECT_TRUE(Exists(bb->root_path + "/bin/busybox"));
}

TEST_F(QubeStorageTest, DisposableStartsFromTheDvmTemplatesHomeInItsOwnRange) {
  auto dvm = Prepare(Req("dvm", kShared, "tpl"));
  ASSERT_TRUE(dvm) << dvm.error().ToString();
  // Customising the disposable template's home.
  std::string rc = dvm->private_volume + "/home/user/.profile";
  Spit(rc, "export EDITOR=vi\n");
  ASSERT_EQ(::chown(rc.c_str(), dvm->ids.base + 1000, dvm->ids.base + 1000), 0);
  ASSERT_EQ(::chmod(rc.c_str(), 0600), 0);
  std::string tool = dvm->private_volume + "/rw/tool";
  Spit(tool, "#!/bin/sh\n");
  ASSERT_EQ(::chown(tool.c_str(), dvm->ids.base, dvm->ids.base + 50), 0);
  ASSERT_EQ(::chmod(tool.c_str(), 02755), 0);

  auto disp = Prepare(Req("disp1", kShared, "tpl", true, "dvm"));
  ASSERT_TRUE(disp) << disp.error().ToString();
  ASSERT_NE(disp->ids, dvm->ids);
  std::string copy = disp->private_volume + "/home/user/.profile";
  EXPECT_EQ(Slurp(copy), "export EDITOR=vi\n");
  EXPECT_EQ(LStat(copy).st_uid, disp->ids.base + 1000);
  EXPECT_EQ(LStat(copy).st_gid, disp->ids.base + 1000);
  EXPECT_EQ(LStat(copy).st_mode & 07777, 0600u);
  EXPECT_EQ(LStat(disp->private_volume + "/rw/tool").st_gid, disp->ids.base + 50);
  EXPECT_EQ(LStat(disp->private_volume + "/rw/tool").st_mode & 07777, 02755u);
  EXPECT_EQ(LStat(disp->private_volume).st_uid, disp->ids.base);
  EXPECT_EQ(LStat(disp->private_volume + "/home/user").st_uid, disp->ids.base + 1000);
  // The disposable template's volume is untouched; no temporary is left.
  EXPECT_EQ(LStat(rc).st_uid, dvm->ids.base + 1000);
  for (const auto& e : std::filesystem::directory_iterator(layout().QubeDir("disp1"))) {
    EXPECT_EQ(e.path().filename().string().find(".private.tmp-"), std::string::npos) << e.path();
  }
  // A change in the disposable stays there.
  Spit(disp->private_volume + "/home/user/scratch", "x");
  EXPECT_FALSE(Exists(dvm->private_volume + "/home/user/scratch"));
}

TEST_F(QubeStorageTest, DisposableOfADvmWithoutVolumeGetsAnEmptyOne) {
  auto disp = Prepare(Req("disp2", kShared, "tpl", true, "fresh-dvm"));
  ASSERT_TRUE(disp) << disp.error().ToString();
  EXPECT_TRUE(Exists(disp->private_volume + "/home/user"));
  EXPECT_FALSE(Exists(layout().QubeDir("fresh-dvm")));
}

TEST_F(QubeStorageTest, ASnapshotRefusesFilesOfForeignIds) {
  auto dvm = Prepare(Req("dvm", kShared, "tpl"));
  ASSERT_TRUE(dvm);
  std::string odd = dvm->private_volume + "/rw/odd";
  Spit(odd, "x");
  ASSERT_EQ(::chown(odd.c_str(), 4242, 4242), 0);  // host ids, not the dvm's range
  auto disp = Prepare(Req("disp3", kShared, "tpl", true, "dvm"));
  ASSERT_FALSE(disp);
  EXPECT_EQ(disp.error().errno_value(), EPERM);
  EXPECT_THAT(disp.error().ToString(), HasSubstr(odd));
  EXPECT_FALSE(Exists(layout().PrivateVolume("disp3")));
  ASSERT_TRUE(DestroyQubeStorage(layout(), "disp3"));
}

TEST_F(QubeStorageTest, DestroyLeavesNothingOfADisposable) {
  ASSERT_TRUE(Prepare(Req("dvm", kShared, "tpl")));
  std::set<std::string> before = Tree(t_.base());
  auto disp = Prepare(Req("disp4", kShared, "tpl", true, "dvm"));
  ASSERT_TRUE(disp) << disp.error().ToString();
  EXPECT_NE(Tree(t_.base()), before);
  // Its stop released the template generation it ran on (Cell::Stop).
  ASSERT_TRUE(ReleaseGenerations(layout(), "disp4"));
  ASSERT_TRUE(DestroyQubeStorage(layout(), "disp4"));
  EXPECT_EQ(Tree(t_.base()), before);
  EXPECT_FALSE(LookupIdRange(layout(), "disp4"));
}

TEST_F(QubeStorageTest, MissingTemplateFailsBeforeAnythingIsMade) {
  auto p = Prepare(Req("work", kShared, "nosuch"));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().errno_value(), ENOENT);
  EXPECT_THAT(p.error().ToString(), HasSubstr("template nosuch"));
  EXPECT_FALSE(Exists(layout().QubeDir("work")));
  EXPECT_FALSE(LookupIdRange(layout(), "work"));
  auto solo = Prepare(Req("solo", RootSource::kStandalone, "nosuch"));
  ASSERT_FALSE(solo);
  EXPECT_EQ(solo.error().errno_value(), ENOENT);
  EXPECT_FALSE(Exists(layout().StandaloneRoot("solo")));
}

TEST_F(QubeStorageTest, RefusesContradictoryRequests) {
  for (const QubeStorageRequest& bad : std::vector<QubeStorageRequest>{
           Req("x", kShared, ""),
           Req("x", RootSource::kTemplateOwn, "tpl", true),
           Req("x", kShared, "tpl", false, "dvm"),
           Req("../x", kShared, "tpl"),
           Req("x", kShared, "tpl", true, "a/b"),
       }) {
    auto p = Prepare(bad);
    ASSERT_FALSE(p) << bad.qube;
    EXPECT_EQ(p.error().errno_value(), EINVAL) << p.error().ToString();
  }
  EXPECT_FALSE(Exists(layout().QubeDir("x")));
}

TEST_F(QubeStorageTest, ListNamesQubesWithStorage) {
  EXPECT_TRUE(ListQubeStorage(layout())->empty());
  ASSERT_TRUE(Prepare(Req("work", kShared, "tpl")));
  ASSERT_TRUE(Prepare(Req("alpha", kShared, "tpl")));
  std::filesystem::create_directories(layout().QubeDir("..hidden"));  // not a name
  Spit(layout().state_dir + "/qubes/file", "x");                      // not a directory
  EXPECT_THAT(*ListQubeStorage(layout()), ElementsAre("alpha", "work"));
}

}  // namespace
}  // namespace tessera::storage
