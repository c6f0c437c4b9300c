#pragma once
// Shared helpers for the storage tests: a throwaway state/runtime dir pair.

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "storage/idmap_internal.h"
#include "storage/storage.h"

namespace tessera::storage::testing {

class TempLayout {
 public:
  TempLayout() {
    char tmpl[] = "/tmp/tessera-storage-test-XXXXXX";
    char* dir = ::mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    base_ = dir;
    layout_.state_dir = base_ + "/state";
    layout_.runtime_dir = base_ + "/run";
    std::filesystem::create_directories(layout_.state_dir);
    std::filesystem::create_directories(layout_.runtime_dir);
  }
  ~TempLayout() {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
    // Ranges this layout registered host-wide are stale now: drop them, so a
    // test run leaves the registry as it found it. Best effort (non-root
    // cannot write it, and then registered nothing).
    (void)internal::PruneIdRegistry(std::string(kHostIdRegistryDir));
  }
  const Layout& layout() const { return layout_; }
  const std::string& base() const { return base_; }

 private:
  std::string base_;
  Layout layout_;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void Spit(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

inline struct stat LStat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

inline bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace tessera::storage::testing
