#pragma once
// Keeps the policy in force across reloads. A reload that fails leaves the
// last good policy in force and the errors are reported loudly (logged at
// error level and kept for `status`); before any policy ever loaded, every
// request is denied. The daemon never fails open.
//
//   policy::PolicyHolder holder;
//   holder.Reload(policy::LoadPolicyDirs(dirs));        // on start and on change
//   policy::Resolution r = holder.Evaluate(request, system);

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <tl/expected.hpp>

#include "policy/policy.h"

namespace tessera::policy {

class PolicyHolder {
 public:
  // Returns true if `loaded` is now in force.
  bool Reload(tl::expected<Policy, std::vector<LoadError>> loaded);

  // The policy in force, or null if none ever loaded.
  std::shared_ptr<const Policy> Current() const;
  // Errors of the last failed reload (empty after a good one).
  std::vector<LoadError> LastErrors() const;
  // Bumped by every successful reload.
  uint64_t generation() const;

  // Evaluates against the policy in force; with none, denies (stage parse).
  // A denial's text is in `reason` (why == kMessage): the result does not
  // depend on the policy staying loaded.
  Resolution Evaluate(const Request& request, const SystemInfo& system) const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Policy> current_;
  std::vector<LoadError> last_errors_;
  uint64_t generation_ = 0;
};

// The resolution for "no usable policy": deny, naming the first error.
Resolution DenyForBrokenPolicy(const std::vector<LoadError>& errors);

}  // namespace tessera::policy
