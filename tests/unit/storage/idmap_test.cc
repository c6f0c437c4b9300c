#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "storage/idmap_internal.h"
#include "storage/storage.h"
#include "test_util.h"

namespace tessera::storage {
namespace {

using testing::Slurp;
using testing::Spit;
using testing::TempLayout;

TEST(LayoutTest, PathsFollowEnvironment) {
  ::setenv("TESSERA_STATE_DIR", "/tmp/s-dir", 1);
  ::setenv("TESSERA_RUNTIME_DIR", "/tmp/r-dir", 1);
  Layout l = Layout::FromEnvironment();
  ::unsetenv("TESSERA_STATE_DIR");
  ::unsetenv("TESSERA_RUNTIME_DIR");
  EXPECT_EQ(l.state_dir, "/tmp/s-dir");
  EXPECT_EQ(l.runtime_dir, "/tmp/r-dir");
  EXPECT_EQ(l.TemplateDir("deb"), "/tmp/s-dir/templates/deb");
  EXPECT_EQ(l.TemplateRoot("deb"), "/tmp/s-dir/templates/deb/root");
  EXPECT_EQ(l.QubeDir("work"), "/tmp/s-dir/qubes/work");
  EXPECT_EQ(l.PrivateVolume("work"), "/tmp/s-dir/qubes/work/private");
  EXPECT_EQ(l.StandaloneRoot("work"), "/tmp/s-dir/qubes/work/root");
  EXPECT_EQ(l.ScratchDir("work"), "/tmp/r-dir/cells/work");
  Layout d = Layout::FromEnvironment();
  EXPECT_EQ(d.state_dir, "/var/lib/tessera");
  EXPECT_EQ(d.runtime_dir, "/run/tessera");
}

TEST(ValidateNameTest, AcceptsAndRejects) {
  for (const char* ok : {"work", "a", "Disp-1.x_y", "abcdefghijklmnopqrstuvwxyz01234"}) {
    EXPECT_TRUE(ValidateName(ok)) << ok;
  }
  for (const char* bad : {"", "1abc", "../x", "a/b", ".hidden", "a b", "-x",
                          "abcdefghijklmnopqrstuvwxyz012345", "é"}) {
    auto s = ValidateName(bad, "template");
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().errno_value(), EINVAL);
    EXPECT_THAT(s.error().message(), ::testing::HasSubstr("template name"));
  }
}

// The id-range tests use a registry of their own (internal::*In), so exact
// bases and staleness do not depend on what else runs on the host.
std::string Registry(const TempLayout& t) { return t.base() + "/ids"; }
Result<IdRange> Allocate(const TempLayout& t, const std::string& qube) {
  return internal::AllocateIdRangeIn(t.layout(), qube, Registry(t));
}
Status Release(const TempLayout& t, const std::string& qube) {
  return internal::ReleaseIdRangeIn(t.layout(), qube, Registry(t));
}

void ExpectAllExitedZero(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

TEST(IdRangeTest, StableUniqueAndPersistent) {
  TempLayout t;
  auto a = Allocate(t, "alpha");
  auto b = Allocate(t, "beta");
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_EQ(a->base, kFirstHostId);
  EXPECT_EQ(a->count, kIdsPerQube);
  EXPECT_EQ(b->base, kFirstHostId + kIdsPerQube);
  // Same name, same range; also through a fresh Layout (as after a restart).
  Layout again{t.layout().state_dir, t.layout().runtime_dir};
  EXPECT_EQ(*internal::AllocateIdRangeIn(again, "alpha", Registry(t)), *a);
  EXPECT_EQ(*LookupIdRange(again, "beta"), *b);
  auto none = LookupIdRange(again, "gamma");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().errno_value(), ENOENT);
  // The file is what makes it persistent.
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["qubes"]["alpha"].get<uint64_t>(), a->base);
  EXPECT_EQ(doc["format"].get<int>(), 1);
}

TEST(IdRangeTest, ReleasedRangeIsRecycledOnceItsStorageIsGone) {
  TempLayout t;
  IdRange a = *Allocate(t, "alpha");
  IdRange other = *Allocate(t, "other");
  ASSERT_TRUE(Release(t, "alpha"));
  ASSERT_TRUE(Release(t, "alpha"));  // idempotent: listed free once
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array({a.base}));
  EXPECT_FALSE(doc["qubes"].contains("alpha"));
  uint64_t next = doc["next_base"].get<uint64_t>();
  // Another name gets the released base; next_base does not grow.
  IdRange b = *Allocate(t, "beta");
  EXPECT_EQ(b.base, a.base);
  EXPECT_EQ(b.count, kIdsPerQube);
  EXPECT_EQ(*LookupIdRange(t.layout(), "beta"), b);
  doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array());
  EXPECT_EQ(doc["next_base"].get<uint64_t>(), next);
  // With the free list empty, a new name grows next_base again.
  IdRange c = *Allocate(t, "alpha");
  EXPECT_EQ(c.base, next);
  EXPECT_NE(c.base, other.base);
  // Oldest released first.
  ASSERT_TRUE(Release(t, "other"));
  ASSERT_TRUE(Release(t, "alpha"));
  EXPECT_EQ(Allocate(t, "d1")->base, other.base);
  EXPECT_EQ(Allocate(t, "d2")->base, c.base);
}

TEST(IdRangeTest, RangeIsNotRecycledWhileStorageRemains) {
  TempLayout t;
  IdRange a = *Allocate(t, "alpha");
  std::filesystem::create_directories(t.layout().QubeDir("alpha"));
  ASSERT_TRUE(Release(t, "alpha"));
  EXPECT_FALSE(LookupIdRange(t.layout(), "alpha"));
  IdRange b = *Allocate(t, "beta");
  EXPECT_NE(b.base, a.base);

  std::filesystem::create_directories(t.layout().ScratchDir("beta"));
  ASSERT_TRUE(Release(t, "beta"));
  EXPECT_NE(Allocate(t, "gamma")->base, b.base);
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array());
}

TEST(IdRangeTest, DestroyQubeStorageReleasesTheRangeForRecycling) {
  if (::geteuid() != 0) GTEST_SKIP() << "EnsurePrivateVolume chowns into the range";
  TempLayout t;
  IdRange a = *AllocateIdRange(t.layout(), "disp1");  // the host registry
  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "disp1", a));
  ASSERT_TRUE(CreateScratch(t.layout(), "disp1"));
  ASSERT_TRUE(DestroyQubeStorage(t.layout(), "disp1"));
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array({a.base}));
  auto registry = nlohmann::json::parse(Slurp(std::string(kHostIdRegistryDir) + "/ranges.json"));
  for (const auto& r : registry["ranges"]) EXPECT_NE(r["base"].get<uint64_t>(), a.base);
}

TEST(IdRangeTest, ReadsFilesWithoutFreeAndKeepsTheFormat) {
  TempLayout t;
  // A file written before "free" existed.
  Spit(t.layout().state_dir + "/idmap.json",
       "{\"format\":1,\"next_base\":268566528,\"qubes\":{\"a\":268435456}}");
  EXPECT_EQ(LookupIdRange(t.layout(), "a")->base, 268435456u);
  EXPECT_EQ(Allocate(t, "b")->base, 268566528u);
  // What we write stays format 1 with the fields an older reader needs.
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["format"], 1);
  EXPECT_TRUE(doc["next_base"].is_number_unsigned());
  EXPECT_TRUE(doc["qubes"].is_object());
  EXPECT_TRUE(doc["free"].is_array());
  // 268500992 lies below next_base and is neither a qube's nor free: it was
  // released while files remained, so it stays retired.
  EXPECT_EQ(doc["retired"], nlohmann::json::array({268500992u}));
}

TEST(IdRangeTest, RejectsACorruptFreeList) {
  TempLayout t;
  std::string path = t.layout().state_dir + "/idmap.json";
  for (const char* bad : {
           R"({"format":1,"next_base":268566528,"qubes":{"a":268435456},"free":[268435456]})",
           R"({"format":1,"next_base":268566528,"qubes":{},"free":[268435456,268435456]})",
           R"({"format":1,"next_base":268566528,"qubes":{},"free":[268566528]})",
           R"({"format":1,"next_base":268566528,"qubes":{},"free":[5]})",
           R"({"format":1,"next_base":268566528,"qubes":{},"free":{}})",
       }) {
    Spit(path, bad);
    auto r = Allocate(t, "z");
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("free")) << bad;
  }
}

TEST(IdRangeTest, RejectsBadNameAndCorruptFile) {
  TempLayout t;
  EXPECT_FALSE(Allocate(t, "../evil"));
  Spit(t.layout().state_dir + "/idmap.json", "{\"format\":1,\"next_base\":5,\"qubes\":{}}");
  auto r = Allocate(t, "alpha");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("idmap.json"));
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("next_base"));
  Spit(t.layout().state_dir + "/idmap.json",
       "{\"format\":1,\"next_base\":268566528,\"qubes\":{\"a\":268435456,\"b\":268435456}}");
  r = Allocate(t, "alpha");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("qubes.b"));
  Spit(t.layout().state_dir + "/idmap.json", "not json");
  EXPECT_FALSE(Allocate(t, "alpha"));
}

TEST(IdRangeTest, ConcurrentProcessesNeverShareARange) {
  TempLayout t;
  constexpr int kProcs = 8;
  constexpr int kPerProc = 6;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int bad = 0;
      for (int i = 0; i < kPerProc; ++i) {
        std::string name = "q" + std::to_string(p) + "x" + std::to_string(i);
        if (!Allocate(t, name)) bad = 1;
        // Everyone also asks for one shared name: it must get one range.
        if (!Allocate(t, "shared")) bad = 1;
      }
      ::_exit(bad);
    }
    pids.push_back(pid);
  }
  ExpectAllExitedZero(pids);
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  std::set<uint64_t> bases;
  for (auto& [name, base] : doc["qubes"].items()) {
    EXPECT_TRUE(bases.insert(base.get<uint64_t>()).second) << "duplicate base for " << name;
  }
  EXPECT_EQ(bases.size(), static_cast<size_t>(kProcs * kPerProc + 1));
  EXPECT_EQ(*bases.rbegin(), kFirstHostId + uint64_t{kIdsPerQube} * (bases.size() - 1));
}

// ---- host-wide uniqueness (the registry) ------------------------------------

nlohmann::json RegistryDoc(const std::string& registry) {
  return nlohmann::json::parse(Slurp(registry + "/ranges.json"));
}

TEST(IdRegistryTest, TwoStateDirsAllocatingConcurrentlyNeverOverlap) {
  TempLayout a;
  TempLayout b;
  std::string registry = Registry(a);
  constexpr int kProcs = 6;
  constexpr int kPerProc = 5;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const Layout& layout = (p % 2 == 0 ? a : b).layout();
      int bad = 0;
      for (int i = 0; i < kPerProc; ++i) {
        std::string name = "q" + std::to_string(p) + "x" + std::to_string(i);
        if (!internal::AllocateIdRangeIn(layout, name, registry)) bad = 1;
      }
      ::_exit(bad);
    }
    pids.push_back(pid);
  }
  ExpectAllExitedZero(pids);
  std::set<uint64_t> bases;
  for (const TempLayout* t : {&a, &b}) {
    auto doc = nlohmann::json::parse(Slurp(t->layout().state_dir + "/idmap.json"));
    for (auto& [name, base] : doc["qubes"].items()) {
      EXPECT_TRUE(bases.insert(base.get<uint64_t>()).second) << "two qubes share " << base;
    }
  }
  EXPECT_EQ(bases.size(), static_cast<size_t>(kProcs * kPerProc));
  auto reg = RegistryDoc(registry);
  EXPECT_EQ(reg["ranges"].size(), bases.size());
  for (const auto& r : reg["ranges"]) {
    EXPECT_TRUE(bases.count(r["base"].get<uint64_t>()));
    std::string dir = r["state_dir"].get<std::string>();
    EXPECT_TRUE(dir == a.layout().state_dir || dir == b.layout().state_dir) << dir;
  }
}

TEST(IdRegistryTest, StaleEntriesAreReclaimed) {
  TempLayout t;
  std::string registry = Registry(t);
  Layout gone{t.base() + "/gone-state", t.base() + "/gone-run"};
  Layout edited{t.base() + "/edited-state", t.base() + "/edited-run"};
  Layout live{t.base() + "/live-state", t.base() + "/live-run"};
  IdRange g = *internal::AllocateIdRangeIn(gone, "g", registry);
  IdRange e = *internal::AllocateIdRangeIn(edited, "e", registry);
  EXPECT_NE(g, e);
  // A deleted state dir (a test's temp dir), and one whose idmap.json no
  // longer lists the range: both ranges are free for anyone again.
  std::filesystem::remove_all(gone.state_dir);
  Spit(edited.state_dir + "/idmap.json",
       R"({"format":1,"next_base":)" + std::to_string(e.base + kIdsPerQube) +
           R"(,"qubes":{},"free":[],"retired":[]})");
  IdRange l1 = *internal::AllocateIdRangeIn(live, "l1", registry);
  IdRange l2 = *internal::AllocateIdRangeIn(live, "l2", registry);
  EXPECT_EQ(std::set<uid_t>({l1.base, l2.base}), std::set<uid_t>({g.base, e.base}));
  auto reg = RegistryDoc(registry);
  ASSERT_EQ(reg["ranges"].size(), 2u);
  for (const auto& r : reg["ranges"]) EXPECT_EQ(r["state_dir"], live.state_dir);
  // PruneIdRegistry does the same without allocating.
  std::filesystem::remove_all(live.state_dir);
  ASSERT_TRUE(internal::PruneIdRegistry(registry));
  EXPECT_TRUE(RegistryDoc(registry)["ranges"].empty());
  EXPECT_TRUE(internal::PruneIdRegistry(t.base() + "/no-registry"));
}

TEST(IdRegistryTest, RetiredRangesStayTakenWhileTheirStateDirExists) {
  TempLayout t;
  std::string registry = Registry(t);
  Layout other{t.base() + "/other-state", t.base() + "/other-run"};
  IdRange r = *Allocate(t, "kept");
  std::filesystem::create_directories(t.layout().QubeDir("kept"));  // storage remains
  ASSERT_TRUE(Release(t, "kept"));
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["retired"], nlohmann::json::array({r.base}));
  EXPECT_NE(internal::AllocateIdRangeIn(other, "o", registry)->base, r.base);
  EXPECT_NE(Allocate(t, "again")->base, r.base);
  auto reg = RegistryDoc(registry);
  bool found = false;
  for (const auto& e : reg["ranges"]) {
    if (e["base"].get<uint64_t>() == r.base) found = e.value("retired", false);
  }
  EXPECT_TRUE(found);
}

TEST(IdRegistryTest, LegacyRangesAreRegisteredOnFirstUse) {
  TempLayout t;
  std::string registry = Registry(t);
  // Written before the registry existed.
  Spit(t.layout().state_dir + "/idmap.json",
       R"({"format":1,"next_base":268566528,"qubes":{"a":268435456,"b":268500992},"free":[]})");
  EXPECT_EQ(Allocate(t, "a")->base, 268435456u);
  auto reg = RegistryDoc(registry);
  ASSERT_EQ(reg["ranges"].size(), 2u);  // b too: no other state dir may take it
  Layout other{t.base() + "/other-state", t.base() + "/other-run"};
  EXPECT_EQ(internal::AllocateIdRangeIn(other, "c", registry)->base, 268566528u);
}

TEST(IdRegistryTest, ALegacyRangeHeldByAnotherStateDirIsRefused) {
  TempLayout t;
  std::string registry = Registry(t);
  Layout first{t.base() + "/first-state", t.base() + "/first-run"};
  ASSERT_EQ(internal::AllocateIdRangeIn(first, "x", registry)->base, kFirstHostId);
  // An older daemon gave the same range to a qube of this state dir.
  Spit(t.layout().state_dir + "/idmap.json",
       R"({"format":1,"next_base":268500992,"qubes":{"dup":268435456}})");
  auto r = Allocate(t, "dup");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errno_value(), EEXIST);
  EXPECT_THAT(r.error().message(), ::testing::HasSubstr(t.layout().state_dir));
  EXPECT_THAT(r.error().message(), ::testing::HasSubstr(first.state_dir));
  EXPECT_THAT(r.error().message(), ::testing::HasSubstr("qube x"));
  // Other qubes of this state dir still get ranges of their own.
  IdRange fresh = *Allocate(t, "fresh");
  EXPECT_NE(fresh.base, kFirstHostId);
}

TEST(IdRegistryTest, StateDirsAreRecordedCanonically) {
  TempLayout t;
  std::string registry = Registry(t);
  Layout spelled{t.layout().state_dir + "/../state/.", t.layout().runtime_dir};
  ASSERT_TRUE(internal::AllocateIdRangeIn(spelled, "q", registry));
  EXPECT_EQ(RegistryDoc(registry)["ranges"][0]["state_dir"], t.layout().state_dir);
  // The same qube through the plain spelling is the same range, not a collision.
  EXPECT_TRUE(Allocate(t, "q"));
}

TEST(IdRegistryTest, ACorruptRegistryIsAnErrorNotAGuess) {
  TempLayout t;
  std::filesystem::create_directories(Registry(t));
  Spit(Registry(t) + "/ranges.json", R"({"format":1,"ranges":[{"base":5}]})");
  auto r = Allocate(t, "q");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("ranges.json"));
  EXPECT_FALSE(LookupIdRange(t.layout(), "q"));
}

TEST(IdRangeTest, NextFreeBaseSkipsReservedAndStopsAtTheEnd) {
  using internal::NextFreeBase;
  EXPECT_EQ(*NextFreeBase(kFirstHostId, {}), kFirstHostId);
  // A subuid range overlapping the first two slots pushes us to the third.
  std::vector<internal::ReservedRange> reserved = {{kFirstHostId + 100, kIdsPerQube}};
  EXPECT_EQ(*NextFreeBase(kFirstHostId, reserved), kFirstHostId + 2ull * kIdsPerQube);
  // Ranges far below (normal subuid 100000:65536) do not matter.
  EXPECT_EQ(*NextFreeBase(kFirstHostId, {{100000, 65536}}), kFirstHostId);
  auto full = NextFreeBase(0xFFFF0000ull, {});
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().errno_value(), ENOSPC);
  EXPECT_TRUE(NextFreeBase(0xFFFE0000ull, {}));
}

}  // namespace
}  // namespace tessera::storage
