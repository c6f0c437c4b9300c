#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/scope_guard.h"
#include "common/unique_fd.h"

namespace tessera {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tessera-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(UniqueFdTest, ClosesOnDestructionAndMove) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
  }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(UniqueFdTest, ReleaseKeepsFdOpen) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  UniqueFd a(raw);
  int released = a.release();
  EXPECT_FALSE(a.valid());
  EXPECT_GE(::fcntl(released, F_GETFD), 0);
  ::close(released);
}

TEST(ScopeGuardTest, RunsUnlessDismissed) {
  int runs = 0;
  { ScopeGuard g([&] { ++runs; }); }
  {
    ScopeGuard g([&] { ++runs; });
    g.Dismiss();
  }
  EXPECT_EQ(runs, 1);
}

TEST(FsTest, WriteAtomicThenRead) {
  TempDir dir;
  std::string path = dir.path() + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "one", 0600).has_value());
  ASSERT_TRUE(WriteFileAtomic(path, "two", 0600).has_value());
  auto text = ReadFile(path);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, "two");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temporary file is left behind.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1u);
}

size_t CountEntries(const std::string& dir) {
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  return entries;
}

TEST(FsTest, ReadRegularFileRefusesFifosAndDirectoriesWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.path() + "/system.toml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // ReadFile would block in open() until a writer came; this must not.
  auto refused = ReadRegularFile(fifo);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().ToString(), fifo + " is a FIFO, not a regular file");
  auto directory = ReadRegularFile(dir.path());
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().ToString(), dir.path() + " is a directory, not a regular file");
  const std::string file = dir.path() + "/ok.toml";
  ASSERT_TRUE(WriteFileAtomic(file, "x = 1\n"));
  EXPECT_EQ(ReadRegularFile(file).value_or("?"), "x = 1\n");
  EXPECT_FALSE(ReadRegularFile(file, 3));  // the size limit still holds
}

TEST(FsTest, WriteAtomicSetsTheExactModeWhateverTheUmask) {
  TempDir dir;
  std::string path = dir.path() + "/f";
  mode_t old = ::umask(077);
  Status written = WriteFileAtomic(path, "x", 0644);
  ::umask(old);
  ASSERT_TRUE(written) << written.error().ToString();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST(FsTest, WriteAtomicCrashSafeReplacesTheFileAsAWhole) {
  TempDir dir;
  std::string path = dir.path() + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "old", 0600, Durability::kCrashSafe));
  UniqueFd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  ASSERT_TRUE(WriteFileAtomic(path, "new", 0600, Durability::kCrashSafe));
  // A reader of the old file keeps the old content: a new inode was renamed in.
  char buf[8] = {};
  ASSERT_EQ(::read(reader.get(), buf, sizeof buf), 3);
  EXPECT_STREQ(buf, "old");
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_EQ(CountEntries(dir.path()), 1u);
}

TEST(FsTest, WriteAtomicFailureLeavesNoTemporaryFile) {
  TempDir dir;
  // rename over a non-empty directory fails after the temp file was written.
  std::filesystem::create_directories(dir.path() + "/target/inside");
  Status over_dir = WriteFileAtomic(dir.path() + "/target", "x");
  ASSERT_FALSE(over_dir);
  EXPECT_NE(over_dir.error().message().find("rename"), std::string::npos);
  EXPECT_EQ(CountEntries(dir.path()), 1u);
  // A missing directory fails at once.
  Status missing = WriteFileAtomic(dir.path() + "/no/such/file", "x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  EXPECT_EQ(CountEntries(dir.path()), 1u);
}

TEST(FsTest, WriteAtomicReplacesASymlinkInsteadOfFollowingIt) {
  TempDir dir;
  std::string victim = dir.path() + "/victim";
  ASSERT_TRUE(WriteFileAtomic(victim, "keep"));
  ASSERT_EQ(::symlink(victim.c_str(), (dir.path() + "/link").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomic(dir.path() + "/link", "new"));
  EXPECT_EQ(*ReadFile(victim), "keep");
  EXPECT_TRUE(std::filesystem::is_regular_file(
      std::filesystem::symlink_status(dir.path() + "/link")));
}

TEST(FsTest, ConcurrentAtomicWritersNeverMixContent) {
  TempDir dir;
  std::string path = dir.path() + "/shared";
  std::vector<std::thread> writers;
  for (int t = 0; t < 6; ++t) {
    writers.emplace_back([&, t] {
      std::string content(100000, static_cast<char>('a' + t));
      for (int i = 0; i < 20; ++i) {
        Status s = WriteFileAtomic(path, content, 0600, Durability::kCrashSafe);
        EXPECT_TRUE(s) << s.error().ToString();
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    auto text = ReadFile(path);
    if (!text) continue;  // not written yet
    ASSERT_EQ(text->size(), 100000u);
    EXPECT_EQ(text->find_first_not_of(text->front()), std::string::npos);
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(CountEntries(dir.path()), 1u);
}

TEST(FsTest, ReadFileRefusesOversizedAndMissing) {
  TempDir dir;
  std::string path = dir.path() + "/big";
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100, 'x')).has_value());
  auto big = ReadFile(path, 10);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().errno_value(), EFBIG);
  auto missing = ReadFile(dir.path() + "/nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().errno_value(), ENOENT);
  EXPECT_NE(missing.error().ToString().find("open "), std::string::npos);
}

TEST(FsTest, MakeDirsCreatesNestedAndRejectsFile) {
  TempDir dir;
  std::string nested = dir.path() + "/a/b/c";
  ASSERT_TRUE(MakeDirs(nested).has_value());
  EXPECT_TRUE(std::filesystem::is_directory(nested));
  ASSERT_TRUE(MakeDirs(nested).has_value());
  ASSERT_TRUE(WriteFileAtomic(dir.path() + "/f", "x").has_value());
  auto r = MakeDirs(dir.path() + "/f");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errno_value(), ENOTDIR);
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName("/c"), "/");
}

TEST(PathsTest, EnvironmentOverridesDefaults) {
  ::unsetenv("TESSERA_STATE_DIR");
  ::unsetenv("TESSERA_CONFIG");
  EXPECT_EQ(StateDir(), "/var/lib/tessera");
  EXPECT_EQ(ConfigPath(""), "/etc/tessera/system.toml");
  ::setenv("TESSERA_STATE_DIR", "/tmp/s", 1);
  ::setenv("TESSERA_RUNTIME_DIR", "/tmp/r", 1);
  ::setenv("TESSERA_CONFIG", "/tmp/c.toml", 1);
  EXPECT_EQ(StateDir(), "/tmp/s");
  EXPECT_EQ(RuntimeDir(), "/tmp/r");
  EXPECT_EQ(ConfigPath(""), "/tmp/c.toml");
  EXPECT_EQ(ConfigPath("/x.nix"), "/x.nix");
  ::unsetenv("TESSERA_STATE_DIR");
  ::unsetenv("TESSERA_RUNTIME_DIR");
  ::unsetenv("TESSERA_CONFIG");
}

TEST(LogTest, FormatsLogfmtWithQuoting) {
  EXPECT_EQ(FormatLogLine(LogLevel::kWarn, "qube started", {{"qube", "work"}, {"note", "a \"b\""}}),
            "level=warn msg=\"qube started\" qube=work note=\"a \\\"b\\\"\"");
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "x\ny", {{"empty", ""}}),
            "level=info msg=\"x\\ny\" empty=\"\"");
}

TEST(LogTest, ThresholdFilters) {
  SetLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace tessera
