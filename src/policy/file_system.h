#pragma once
// Where policy text comes from. The parser asks a PolicyFileSystem for files
// and directory listings and never touches the real file system itself, so
// parsing and evaluation stay pure (no syscalls) and tests or the fuzzer can
// feed in-memory trees. The real implementation lives in loader.h.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera::policy {

class PolicyFileSystem {
 public:
  enum class Kind { kMissing, kFile, kDirectory, kOther };

  virtual ~PolicyFileSystem() = default;
  // `path` resolved against `dir` (unless absolute) and normalised, symlinks
  // resolved where the implementation can; used for display and cycle checks.
  virtual std::string Resolve(std::string_view dir, std::string_view path) const = 0;
  // Kind of `path` (symlinks followed).
  virtual Kind Stat(const std::string& path) const = 0;
  virtual Result<std::string> Read(const std::string& path) const = 0;
  // Names (not paths) of the entries of `dir`, any kind, in no particular order.
  virtual Result<std::vector<std::string>> List(const std::string& dir) const = 0;
  // Whether paths name real files (worth showing in error messages).
  virtual bool HasRealPaths() const { return false; }
};

// An in-memory tree: keys are paths ("30-user.policy", "include/admin-ro");
// directories exist implicitly. Relative paths are resolved lexically.
class MemoryFileSystem : public PolicyFileSystem {
 public:
  MemoryFileSystem() = default;
  explicit MemoryFileSystem(std::map<std::string, std::string, std::less<>> files)
      : files_(std::move(files)) {}
  void Set(std::string path, std::string text) { files_[std::move(path)] = std::move(text); }

  std::string Resolve(std::string_view dir, std::string_view path) const override;
  Kind Stat(const std::string& path) const override;
  Result<std::string> Read(const std::string& path) const override;
  Result<std::vector<std::string>> List(const std::string& dir) const override;

 private:
  std::map<std::string, std::string, std::less<>> files_;
};

// Lexical normalisation: collapses "//", "." and ".." (".." at the root stays
// at the root). Keeps a leading '/' if there was one.
std::string NormalizePath(std::string_view path);

}  // namespace tessera::policy
