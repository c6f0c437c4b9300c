#pragma once
// The only part of the policy module that touches the real file system:
// a PolicyFileSystem over the host's directories, and the usual entry point.
//
//   auto loaded = policy::LoadPolicyDirs({.policy_dir = "/etc/tessera/policy.d"});

#include <string>
#include <vector>

#include <tl/expected.hpp>

#include "policy/file_system.h"
#include "policy/policy.h"

namespace tessera::policy {

class RealFileSystem : public PolicyFileSystem {
 public:
  // Joins, then resolves symlinks and "..", like Python's Path.resolve().
  std::string Resolve(std::string_view dir, std::string_view path) const override;
  Kind Stat(const std::string& path) const override;
  Result<std::string> Read(const std::string& path) const override;
  Result<std::vector<std::string>> List(const std::string& dir) const override;
  bool HasRealPaths() const override { return true; }
};

tl::expected<Policy, std::vector<LoadError>> LoadPolicyDirs(const PolicyDirs& dirs);
// The same through `fs` (a RealFileSystem that also records what it read).
tl::expected<Policy, std::vector<LoadError>> LoadPolicyDirs(const PolicyDirs& dirs,
                                                            const PolicyFileSystem& fs);

}  // namespace tessera::policy
