#pragma once
// nftables through libnftables, in a given network namespace
// (docs/NETWORK.md "Rules"): a script given as one buffer is one
// transaction, so a ruleset is replaced whole or not at all.
//
//   UniqueFd netns(open("/proc/PID/ns/net", O_RDONLY | O_CLOEXEC));
//   TRY(RunNft(netns.get(), RenderNetvmRuleset(rules)));
//   std::string listed = TRY(RunNft(netns.get(), "list table inet tessera"));

#include <string>

#include "common/error.h"

namespace tessera::net {

// Runs `script` in the namespace of `netns_fd` (-1: the caller's); the
// calling thread enters it for the call (net/netns.h). Its output; nft's
// own message when it fails.
Result<std::string> RunNft(int netns_fd, const std::string& script);

}  // namespace tessera::net
