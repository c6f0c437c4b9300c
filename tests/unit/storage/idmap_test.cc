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

TEST(IdRangeTest, StableUniqueAndPersistent) {
  TempLayout t;
  auto a = AllocateIdRange(t.layout(), "alpha");
  auto b = AllocateIdRange(t.layout(), "beta");
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_EQ(a->base, kFirstHostId);
  EXPECT_EQ(a->count, kIdsPerQube);
  EXPECT_EQ(b->base, kFirstHostId + kIdsPerQube);
  // Same name, same range; also through a fresh Layout (as after a restart).
  Layout again{t.layout().state_dir, t.layout().runtime_dir};
  EXPECT_EQ(*AllocateIdRange(again, "alpha"), *a);
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
  IdRange a = *AllocateIdRange(t.layout(), "alpha");
  IdRange other = *AllocateIdRange(t.layout(), "other");
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "alpha"));
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "alpha"));  // idempotent: listed free once
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array({a.base}));
  EXPECT_FALSE(doc["qubes"].contains("alpha"));
  uint64_t next = doc["next_base"].get<uint64_t>();
  // Another name gets the released base; next_base does not grow.
  IdRange b = *AllocateIdRange(t.layout(), "beta");
  EXPECT_EQ(b.base, a.base);
  EXPECT_EQ(b.count, kIdsPerQube);
  EXPECT_EQ(*LookupIdRange(t.layout(), "beta"), b);
  doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array());
  EXPECT_EQ(doc["next_base"].get<uint64_t>(), next);
  // With the free list empty, a new name grows next_base again.
  IdRange c = *AllocateIdRange(t.layout(), "alpha");
  EXPECT_EQ(c.base, next);
  EXPECT_NE(c.base, other.base);
  // Oldest released first.
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "other"));
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "alpha"));
  EXPECT_EQ(AllocateIdRange(t.layout(), "d1")->base, other.base);
  EXPECT_EQ(AllocateIdRange(t.layout(), "d2")->base, c.base);
}

TEST(IdRangeTest, RangeIsNotRecycledWhileStorageRemains) {
  TempLayout t;
  IdRange a = *AllocateIdRange(t.layout(), "alpha");
  std::filesystem::create_directories(t.layout().QubeDir("alpha"));
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "alpha"));
  EXPECT_FALSE(LookupIdRange(t.layout(), "alpha"));
  IdRange b = *AllocateIdRange(t.layout(), "beta");
  EXPECT_NE(b.base, a.base);

  std::filesystem::create_directories(t.layout().ScratchDir("beta"));
  ASSERT_TRUE(ReleaseIdRange(t.layout(), "beta"));
  EXPECT_NE(AllocateIdRange(t.layout(), "gamma")->base, b.base);
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["free"], nlohmann::json::array());
}

TEST(IdRangeTest, DestroyQubeStorageRecyclesTheRange) {
  if (::geteuid() != 0) GTEST_SKIP() << "EnsurePrivateVolume chowns into the range";
  TempLayout t;
  IdRange a = *AllocateIdRange(t.layout(), "disp1");
  ASSERT_TRUE(EnsurePrivateVolume(t.layout(), "disp1", a));
  ASSERT_TRUE(CreateScratch(t.layout(), "disp1"));
  ASSERT_TRUE(DestroyQubeStorage(t.layout(), "disp1"));
  EXPECT_EQ(AllocateIdRange(t.layout(), "disp2")->base, a.base);
}

TEST(IdRangeTest, ReadsFilesWithoutFreeAndKeepsTheFormat) {
  TempLayout t;
  // A file written before "free" existed.
  Spit(t.layout().state_dir + "/idmap.json",
       "{\"format\":1,\"next_base\":268566528,\"qubes\":{\"a\":268435456}}");
  EXPECT_EQ(LookupIdRange(t.layout(), "a")->base, 268435456u);
  EXPECT_EQ(AllocateIdRange(t.layout(), "b")->base, 268566528u);
  // What we write stays format 1 with the fields an older reader needs.
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  EXPECT_EQ(doc["format"], 1);
  EXPECT_TRUE(doc["next_base"].is_number_unsigned());
  EXPECT_TRUE(doc["qubes"].is_object());
  EXPECT_TRUE(doc["free"].is_array());
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
    auto r = AllocateIdRange(t.layout(), "z");
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("free")) << bad;
  }
}

TEST(IdRangeTest, RejectsBadNameAndCorruptFile) {
  TempLayout t;
  EXPECT_FALSE(AllocateIdRange(t.layout(), "../evil"));
  Spit(t.layout().state_dir + "/idmap.json", "{\"format\":1,\"next_base\":5,\"qubes\":{}}");
  auto r = AllocateIdRange(t.layout(), "alpha");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("idmap.json"));
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("next_base"));
  Spit(t.layout().state_dir + "/idmap.json",
       "{\"format\":1,\"next_base\":268566528,\"qubes\":{\"a\":268435456,\"b\":268435456}}");
  r = AllocateIdRange(t.layout(), "alpha");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), ::testing::HasSubstr("qubes.b"));
  Spit(t.layout().state_dir + "/idmap.json", "not json");
  EXPECT_FALSE(AllocateIdRange(t.layout(), "alpha"));
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
        if (!AllocateIdRange(t.layout(), name)) bad = 1;
        // Everyone also asks for one shared name: it must get one range.
        if (!AllocateIdRange(t.layout(), "shared")) bad = 1;
      }
      ::_exit(bad);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto doc = nlohmann::json::parse(Slurp(t.layout().state_dir + "/idmap.json"));
  std::set<uint64_t> bases;
  for (auto& [name, base] : doc["qubes"].items()) {
    EXPECT_TRUE(bases.insert(base.get<uint64_t>()).second) << "duplicate base for " << name;
  }
  EXPECT_EQ(bases.size(), static_cast<size_t>(kProcs * kPerProc + 1));
  EXPECT_EQ(*bases.rbegin(), kFirstHostId + uint64_t{kIdsPerQube} * (bases.size() - 1));
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
