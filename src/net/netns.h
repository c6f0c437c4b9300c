#pragma once
// The calling thread in another network namespace for the length of a
// scope (docs/NETWORK.md "Links"): what it makes there (a netlink or
// nftables socket, a UDP socket, a /proc/sys/net file opened for writing)
// stays in that namespace after the thread comes back. setns affects only
// the calling thread; the namespace is named by a pinned descriptor, never
// by a name that could be swapped.
//
//   {
//     NetnsVisit in = TRY(NetnsVisit::Enter(qube_ns));
//     sock = socket(...);            // a socket of the qube's namespace
//   }                                // the thread is back where it was
//
// Coming back cannot fail with a descriptor of the namespace it left; if it
// ever did, the process aborts rather than go on in the wrong namespace.
// A thread of its own (the earlier design) cost a scheduler wait per call
// on a loaded machine: a few milliseconds each on a qube's start path.

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::net {

class NetnsVisit {
 public:
  // Enters the namespace of `netns_fd`; -1 stays where the thread is.
  static Result<NetnsVisit> Enter(int netns_fd);
  NetnsVisit(NetnsVisit&&) = default;
  NetnsVisit& operator=(NetnsVisit&&) = delete;
  NetnsVisit(const NetnsVisit&) = delete;
  NetnsVisit& operator=(const NetnsVisit&) = delete;
  ~NetnsVisit();

 private:
  explicit NetnsVisit(UniqueFd home) : home_(std::move(home)) {}
  UniqueFd home_;  // where the thread was (empty: it did not move)
};

}  // namespace tessera::net
