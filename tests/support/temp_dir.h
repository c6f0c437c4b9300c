#pragma once
// A directory under /tmp for one test, removed with everything in it when the
// object goes. For unit tests that need files (no mounts: integration tests
// remove their trees with their own mount-aware cleanup).
//
//   tessera::testing::TempDir dir;
//   WriteFileAtomic(dir.path() + "/cell.json", text);

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace tessera::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tessera-test-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Empty if the directory could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tessera::testing
