// Orphans, adoption and copies of private volumes (volume_ops.h): nothing a
// user made is ever deleted without a purge, a removed qube's data never
// comes back to a new qube of the same name, and every step survives a crash
// (as root; volumes are chowned into id ranges).

#include "storage/volume_ops.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/fs.h"
#include "storage/qube_storage.h"
#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using testing::Exists;
using ::testing::HasSubstr;
using testing::LStat;
using ::testing::SizeIs;
using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

class VolumeOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "volumes are chowned into id ranges: needs root";
    auto built = BuildTemplate(layout(), "tpl", {});
    ASSERT_TRUE(built) << built.error().ToString();
  }
  const Layout& layout() const { return t_.layout(); }

  // Prepares `qube` as an app qube; returns its range.
  IdRange Prepare(const std::string& qube) {
    QubeStorageRequest r{.qube = qube,
                         .root = RootSource::kTemplateShared,
                         .template_name = "tpl",
                         .disposable = false,
                         .snapshot_from = ""};
    auto p = PrepareQubeStorage(layout(), r);
    EXPECT_TRUE(p) << p.error().ToString();
    return p ? p->ids : IdRange{};
  }
  // A file in the qube's home, owned by its user (uid 1000 inside).
  std::string WriteSecret(const std::string& qube, const IdRange& ids, const std::string& text) {
    std::string path = layout().PrivateVolume(qube) + "/home/user/secret";
    Spit(path, text);
    EXPECT_EQ(::chown(path.c_str(), ids.base + 1000, ids.base + 1000), 0);
    return path;
  }
  std::vector<OrphanInfo> Orphans() {
    auto list = ListOrphans(layout());
    EXPECT_TRUE(list) << list.error().ToString();
    return list ? *list : std::vector<OrphanInfo>{};
  }
  std::string OrphanDir(const std::string& id) { return layout().state_dir + "/orphans/" + id; }

  TempLayout t_;
};

TEST(OrphanIdTest, OnlyWellFormedIdsBecomePaths) {
  EXPECT_TRUE(IsOrphanId("vault@20261122T132528Z"));
  EXPECT_TRUE(IsOrphanId("vault@20261122T132528Z-2"));
  EXPECT_FALSE(IsOrphanId("vault"));
  EXPECT_FALSE(IsOrphanId("vault@"));
  EXPECT_FALSE(IsOrphanId("../x@20261122T132528Z"));
  EXPECT_FALSE(IsOrphanId("vault@20261122T132528Z/.."));
  EXPECT_FALSE(IsOrphanId("vault@20261122X132528Z"));
  EXPECT_FALSE(IsOrphanId("vault@20261122T132528Z-"));
  EXPECT_FALSE(IsOrphanId(".new-abc"));
}

TEST_F(VolumeOpsTest, ARemovedQubesVolumeIsKeptAndANewQubeOfThatNameStartsEmpty) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "old secret");
  auto orphan = OrphanQubeStorage(layout(), "vault", "removed from the system description");
  ASSERT_TRUE(orphan) << orphan.error().ToString();
  ASSERT_TRUE(orphan->has_value());
  const OrphanInfo& o = **orphan;
  EXPECT_TRUE(IsOrphanId(o.id)) << o.id;
  EXPECT_EQ(o.qube, "vault");
  EXPECT_EQ(o.id_base, ids.base);
  EXPECT_GT(o.bytes, 0u);
  EXPECT_EQ(o.reason, "removed from the system description");
  EXPECT_FALSE(Exists(layout().QubeDir("vault")));
  EXPECT_EQ(Slurp(OrphanDir(o.id) + "/private/home/user/secret"), "old secret");

  // Listed, and survives a fresh read (it is all on disk).
  auto list = Orphans();
  ASSERT_THAT(list, SizeIs(1));
  EXPECT_EQ(list[0].id, o.id);
  EXPECT_EQ(list[0].removed, o.removed);
  EXPECT_EQ(list[0].bytes, o.bytes);

  // Re-added: a fresh volume; the old secret does not come back.
  IdRange again = Prepare("vault");
  EXPECT_EQ(again, ids) << "the name keeps its range";
  EXPECT_FALSE(Exists(layout().PrivateVolume("vault") + "/home/user/secret"));
  EXPECT_TRUE(Exists(layout().PrivateVolume("vault") + "/home/user"));
  EXPECT_EQ(Slurp(OrphanDir(o.id) + "/private/home/user/secret"), "old secret");
}

TEST_F(VolumeOpsTest, NoStorageNoOrphan) {
  auto orphan = OrphanQubeStorage(layout(), "never", "gone");
  ASSERT_TRUE(orphan) << orphan.error().ToString();
  EXPECT_FALSE(orphan->has_value());
  EXPECT_THAT(Orphans(), SizeIs(0));
}

TEST_F(VolumeOpsTest, SeveralOrphansOfOneNameAreNamedByIdAndPurgedOneByOne) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "first");
  auto first = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(first && first->has_value());
  Prepare("vault");
  WriteSecret("vault", ids, "second");
  auto second = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(second && second->has_value());
  EXPECT_NE((*first)->id, (*second)->id);
  ASSERT_THAT(Orphans(), SizeIs(2));

  auto ambiguous = FindOrphan(layout(), "vault");
  ASSERT_FALSE(ambiguous);
  EXPECT_EQ(ambiguous.error().errno_value(), EEXIST);
  EXPECT_THAT(ambiguous.error().ToString(), HasSubstr((*first)->id));
  EXPECT_THAT(ambiguous.error().ToString(), HasSubstr((*second)->id));

  auto purged = PurgeOrphan(layout(), (*first)->id);
  ASSERT_TRUE(purged) << purged.error().ToString();
  EXPECT_FALSE(Exists(OrphanDir((*first)->id)));
  // Now the qube name is enough.
  auto found = FindOrphan(layout(), "vault");
  ASSERT_TRUE(found) << found.error().ToString();
  EXPECT_EQ(found->id, (*second)->id);
  ASSERT_TRUE(PurgeOrphan(layout(), "vault"));
  EXPECT_THAT(Orphans(), SizeIs(0));
  auto none = PurgeOrphan(layout(), "vault");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().errno_value(), ENOENT);
  EXPECT_THAT(none.error().ToString(), HasSubstr("no orphaned volume of qube vault"));
}

TEST_F(VolumeOpsTest, AdoptTakesTheOrphanBackInPlaceOfAnEmptyVolume) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "keep me");
  auto o = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(o && o->has_value());
  Prepare("vault");  // re-added and started once: an empty volume
  auto adopted = AdoptOrphan(layout(), "vault", "vault", ids, Displace::kRefuse);
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  EXPECT_EQ(adopted->adopted.id, (*o)->id);
  EXPECT_FALSE(adopted->displaced.has_value()) << "an empty volume is not kept";
  std::string secret = layout().PrivateVolume("vault") + "/home/user/secret";
  EXPECT_EQ(Slurp(secret), "keep me");
  EXPECT_EQ(LStat(secret).st_uid, ids.base + 1000);
  EXPECT_FALSE(Exists(layout().QubeDir("vault") + "/orphan.json"));
  EXPECT_THAT(Orphans(), SizeIs(0));
  EXPECT_EQ(Prepare("vault"), ids);  // and it starts
}

TEST_F(VolumeOpsTest, AdoptIntoAnotherQubeShiftsIdsToItsRange) {
  IdRange old_ids = Prepare("vault");
  std::string secret = WriteSecret("vault", old_ids, "moved");
  ASSERT_EQ(::chmod(secret.c_str(), 04750), 0);
  ASSERT_TRUE(OrphanQubeStorage(layout(), "vault", "removed"));
  auto ids = AllocateIdRange(layout(), "vault2");
  ASSERT_TRUE(ids);
  ASSERT_NE(ids->base, old_ids.base);
  auto adopted = AdoptOrphan(layout(), "vault", "vault2", *ids, Displace::kRefuse);
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  std::string now = layout().PrivateVolume("vault2") + "/home/user/secret";
  EXPECT_EQ(Slurp(now), "moved");
  EXPECT_EQ(LStat(now).st_uid, ids->base + 1000);
  EXPECT_EQ(LStat(now).st_gid, ids->base + 1000);
  EXPECT_EQ(LStat(now).st_mode & 07777, 04750u) << "setuid kept, for the new range only";
  EXPECT_EQ(LStat(layout().PrivateVolume("vault2")).st_uid, ids->base);
  EXPECT_EQ(LStat(layout().PrivateVolume("vault2") + "/home").st_uid, ids->base);
}

TEST_F(VolumeOpsTest, AdoptRefusesToReplaceDataUnlessAskedAndThenKeepsIt) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "old");
  auto o = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(o && o->has_value());
  Prepare("vault");
  WriteSecret("vault", ids, "new");

  auto refused = AdoptOrphan(layout(), "vault", "vault", ids, Displace::kRefuse);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errno_value(), EEXIST);
  EXPECT_THAT(refused.error().ToString(), HasSubstr("already has a volume with data"));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("--force"));
  EXPECT_EQ(Slurp(layout().PrivateVolume("vault") + "/home/user/secret"), "new");
  EXPECT_THAT(Orphans(), SizeIs(1));

  auto forced = AdoptOrphan(layout(), (*o)->id, "vault", ids, Displace::kOrphan);
  ASSERT_TRUE(forced) << forced.error().ToString();
  ASSERT_TRUE(forced->displaced.has_value());
  EXPECT_EQ(Slurp(layout().PrivateVolume("vault") + "/home/user/secret"), "old");
  EXPECT_EQ(Slurp(OrphanDir(forced->displaced->id) + "/private/home/user/secret"), "new");
  EXPECT_THAT(forced->displaced->reason, HasSubstr((*o)->id));
  auto list = Orphans();
  ASSERT_THAT(list, SizeIs(1));
  EXPECT_EQ(list[0].id, forced->displaced->id);
}

TEST_F(VolumeOpsTest, AStandaloneRootCountsAsDataAndTravelsWithTheOrphan) {
  QubeStorageRequest r{.qube = "solo",
                       .root = RootSource::kStandalone,
                       .template_name = "tpl",
                       .disposable = false,
                       .snapshot_from = ""};
  auto p = PrepareQubeStorage(layout(), r);
  ASSERT_TRUE(p) << p.error().ToString();
  auto has = HasData(layout(), "solo");
  ASSERT_TRUE(has);
  EXPECT_TRUE(*has);
  auto o = OrphanQubeStorage(layout(), "solo", "removed");
  ASSERT_TRUE(o && o->has_value());
  EXPECT_TRUE(Exists(OrphanDir((*o)->id) + "/root/bin/busybox"));
  auto ids = AllocateIdRange(layout(), "solo2");
  ASSERT_TRUE(ids);
  ASSERT_TRUE(AdoptOrphan(layout(), "solo", "solo2", *ids, Displace::kRefuse));
  EXPECT_EQ(LStat(layout().StandaloneRoot("solo2") + "/bin/busybox").st_uid, ids->base);
  EXPECT_EQ(LStat(layout().StandaloneRoot("solo2")).st_uid, ids->base);
}

TEST_F(VolumeOpsTest, AnInterruptedAdoptionIsFinishedAtTheNextStart) {
  IdRange old_ids = Prepare("vault");
  WriteSecret("vault", old_ids, "x");
  auto o = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(o && o->has_value());
  // The crash: renamed into place with its orphan.json, not shifted yet.
  std::filesystem::rename(OrphanDir((*o)->id), layout().QubeDir("other"));
  ASSERT_TRUE(Exists(layout().QubeDir("other") + "/orphan.json"));
  IdRange ids = Prepare("other");
  ASSERT_NE(ids.base, old_ids.base);
  std::string secret = layout().PrivateVolume("other") + "/home/user/secret";
  EXPECT_EQ(Slurp(secret), "x");
  EXPECT_EQ(LStat(secret).st_uid, ids.base + 1000);
  EXPECT_FALSE(Exists(layout().QubeDir("other") + "/orphan.json"));
}

TEST_F(VolumeOpsTest, ACrashBeforeTheOrphanRenameLeavesTheVolumeInPlace) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "x");
  // The crash: orphan.json written, the directory not renamed yet.
  ASSERT_TRUE(WriteFileAtomic(layout().QubeDir("vault") + "/orphan.json",
                              R"({"format":1,"qube":"vault","removed":"2026-01-01T00:00:00Z",)"
                              R"("reason":"removed","id_base":)" +
                                  std::to_string(ids.base) + R"(,"bytes":1})"));
  // Orphaning again works (the marker is simply rewritten) ...
  auto o = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(o && o->has_value()) << (o ? "" : o.error().ToString());
  EXPECT_EQ(Slurp(OrphanDir((*o)->id) + "/private/home/user/secret"), "x");
  // ... and a start of the same qube would just drop the marker.
  Prepare("work");
  ASSERT_TRUE(WriteFileAtomic(layout().QubeDir("work") + "/orphan.json",
                              R"({"format":1,"qube":"work","removed":"2026-01-01T00:00:00Z",)"
                              R"("reason":"removed","id_base":)" +
                                  std::to_string(LookupIdRange(layout(), "work")->base) +
                                  R"(,"bytes":1})"));
  Prepare("work");
  EXPECT_FALSE(Exists(layout().QubeDir("work") + "/orphan.json"));
}

TEST_F(VolumeOpsTest, LeftoversOfInterruptedOperationsAreIgnoredThenRemoved) {
  IdRange ids = Prepare("vault");
  WriteSecret("vault", ids, "x");
  ASSERT_TRUE(OrphanQubeStorage(layout(), "vault", "removed"));
  std::string orphans = layout().state_dir + "/orphans";
  ASSERT_TRUE(
      std::filesystem::create_directories(orphans + "/.purge-vault@20260101T000000Z/private"));
  ASSERT_TRUE(std::filesystem::create_directories(orphans + "/.new-abcdef"));
  EXPECT_THAT(Orphans(), SizeIs(1));
  Prepare("work");
  ASSERT_TRUE(OrphanQubeStorage(layout(), "work", "removed"));
  EXPECT_FALSE(Exists(orphans + "/.purge-vault@20260101T000000Z"));
  EXPECT_FALSE(Exists(orphans + "/.new-abcdef"));
  EXPECT_THAT(Orphans(), SizeIs(2));
}

TEST_F(VolumeOpsTest, ACorruptOrphanFileIsAnErrorNamingFileAndField) {
  Prepare("vault");
  auto o = OrphanQubeStorage(layout(), "vault", "removed");
  ASSERT_TRUE(o && o->has_value());
  std::string file = OrphanDir((*o)->id) + "/orphan.json";
  ASSERT_TRUE(WriteFileAtomic(file, R"({"format":1,"qube":"vault","removed":"x","reason":"r",)"
                                    R"("id_base":"many","bytes":1})"));
  auto list = ListOrphans(layout());
  ASSERT_FALSE(list);
  EXPECT_THAT(list.error().ToString(), HasSubstr(file));
  EXPECT_THAT(list.error().ToString(), HasSubstr("\"id_base\""));
  ASSERT_TRUE(WriteFileAtomic(file, R"({"format":1,"qube":"work","removed":"x","reason":"r",)"
                                    R"("id_base":1,"bytes":1})"));
  auto mismatch = FindOrphan(layout(), (*o)->id);
  ASSERT_FALSE(mismatch);
  EXPECT_THAT(mismatch.error().ToString(), HasSubstr("does not match the directory"));
}

TEST_F(VolumeOpsTest, CopyShiftsIdsIntoTheDestinationsRange) {
  IdRange src = Prepare("work");
  std::string secret = WriteSecret("work", src, "cloned");
  std::string tool = layout().PrivateVolume("work") + "/rw/tool";
  Spit(tool, "#!/bin/sh\n");
  ASSERT_EQ(::chown(tool.c_str(), src.base, src.base + 50), 0);
  ASSERT_EQ(::chmod(tool.c_str(), 02755), 0);

  auto copied = CopyPrivateVolume(layout(), "work", "clone", Displace::kRefuse);
  ASSERT_TRUE(copied) << copied.error().ToString();
  EXPECT_GT(copied->bytes, 0u);
  EXPECT_FALSE(copied->displaced.has_value());
  auto dst = LookupIdRange(layout(), "clone");
  ASSERT_TRUE(dst);
  ASSERT_NE(dst->base, src.base);
  std::string copy = layout().PrivateVolume("clone") + "/home/user/secret";
  EXPECT_EQ(Slurp(copy), "cloned");
  EXPECT_EQ(LStat(copy).st_uid, dst->base + 1000);
  EXPECT_EQ(LStat(layout().PrivateVolume("clone") + "/rw/tool").st_gid, dst->base + 50);
  EXPECT_EQ(LStat(layout().PrivateVolume("clone") + "/rw/tool").st_mode & 07777, 02755u);
  EXPECT_EQ(LStat(layout().PrivateVolume("clone")).st_uid, dst->base);
  // The source is untouched; the clone starts.
  EXPECT_EQ(LStat(secret).st_uid, src.base + 1000);
  EXPECT_EQ(Prepare("clone"), *dst);
  EXPECT_EQ(Slurp(copy), "cloned");
}

TEST_F(VolumeOpsTest, CopyReplacesAnEmptyVolumeRefusesDataAndForceOrphansIt) {
  IdRange src = Prepare("work");
  WriteSecret("work", src, "v1");
  IdRange dst = Prepare("clone");
  // Empty destination: replaced.
  ASSERT_TRUE(CopyPrivateVolume(layout(), "work", "clone", Displace::kRefuse));
  EXPECT_THAT(Orphans(), SizeIs(0));
  // Now it holds data.
  WriteSecret("work", src, "v2");
  auto refused = CopyPrivateVolume(layout(), "work", "clone", Displace::kRefuse);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errno_value(), EEXIST);
  EXPECT_THAT(refused.error().ToString(), HasSubstr("already has a private volume with data"));
  EXPECT_EQ(Slurp(layout().PrivateVolume("clone") + "/home/user/secret"), "v1");

  auto forced = CopyPrivateVolume(layout(), "work", "clone", Displace::kOrphan);
  ASSERT_TRUE(forced) << forced.error().ToString();
  ASSERT_TRUE(forced->displaced.has_value());
  EXPECT_EQ(Slurp(layout().PrivateVolume("clone") + "/home/user/secret"), "v2");
  EXPECT_EQ(Slurp(OrphanDir(forced->displaced->id) + "/private/home/user/secret"), "v1");
  EXPECT_EQ(forced->displaced->id_base, dst.base);
  EXPECT_THAT(forced->displaced->reason, HasSubstr("copy of work"));
  // No temporary is left beside the volume.
  for (const auto& e : std::filesystem::directory_iterator(layout().QubeDir("clone"))) {
    EXPECT_EQ(e.path().filename().string().find(".private.tmp-"), std::string::npos) << e.path();
  }
}

TEST_F(VolumeOpsTest, AFailedCopyLeavesTheDestinationAsItWas) {
  IdRange src = Prepare("work");
  std::string odd = layout().PrivateVolume("work") + "/rw/odd";
  Spit(odd, "x");
  ASSERT_EQ(::chown(odd.c_str(), 4242, 4242), 0);  // a host id outside the range
  IdRange dst = Prepare("clone");
  WriteSecret("clone", dst, "mine");
  auto failed = CopyPrivateVolume(layout(), "work", "clone", Displace::kOrphan);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().errno_value(), EPERM);
  EXPECT_THAT(failed.error().ToString(), HasSubstr(odd));
  EXPECT_EQ(Slurp(layout().PrivateVolume("clone") + "/home/user/secret"), "mine");
  EXPECT_THAT(Orphans(), SizeIs(0));
  (void)src;
}

TEST_F(VolumeOpsTest, CopyRefusesAMissingSourceAndItself) {
  auto missing = CopyPrivateVolume(layout(), "nosuch", "clone", Displace::kRefuse);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  EXPECT_THAT(missing.error().ToString(), HasSubstr("nosuch has no private volume"));
  EXPECT_FALSE(Exists(layout().QubeDir("clone")));
  Prepare("work");
  auto self = CopyPrivateVolume(layout(), "work", "work", Displace::kRefuse);
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().errno_value(), EINVAL);
}

}  // namespace
}  // namespace tessera::storage
