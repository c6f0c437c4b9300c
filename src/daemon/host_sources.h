#pragma once
// Template sources that make tesserad read a host path the description names:
// `dir:/PATH` (a directory imported as the template's root) and `host` (the
// host's /usr). A description applied by someone who is not root may not
// introduce one (auth.h MayUseHostSources): the daemon reads as root, so it
// would read root-only files for them. Pure, unit-tested.
//
//   for (const HostSource& s : NewHostSources(running, proposed)) refuse(s);

#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace tessera::daemon {

struct HostSource {
  std::string qube;
  std::string source;
  bool operator==(const HostSource&) const = default;
};

bool IsHostPathSource(std::string_view source);

// The host-path sources `next` has that `current` does not have for the same
// qube: those are what an apply of `next` newly asks the daemon to read (one
// already in the running description was accepted before). A changed
// policy_dir counts too (qube "", source "policy_dir:PATH"): the broker reads
// the policy from it, and the policy decides every inter-qube call.
std::vector<HostSource> NewHostSources(const config::System& current, const config::System& next);

}  // namespace tessera::daemon
