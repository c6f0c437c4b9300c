#include "net/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tessera::net {

Result<NetnsVisit> NetnsVisit::Enter(int netns_fd) {
  if (netns_fd < 0) return NetnsVisit(UniqueFd());
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return Err(Error::FromErrno("open /proc/thread-self/ns/net"));
  if (::setns(netns_fd, CLONE_NEWNET) != 0) {
    return Err(Error::FromErrno("setns into the network namespace"));
  }
  return NetnsVisit(std::move(home));
}

NetnsVisit::~NetnsVisit() {
  if (!home_) return;
  if (::setns(home_.get(), CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "tessera: cannot return to the own network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
}

}  // namespace tessera::net
