#include "net/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include "net/netns.h"

namespace tessera::net {

namespace {

struct Handle {
  nfct_handle* h = nullptr;
  ~Handle() {
    if (h != nullptr) nfct_close(h);
  }
};

struct Matches {
  uint32_t address = 0;  // network order
  std::vector<nf_conntrack*> found;
  ~Matches() {
    for (nf_conntrack* ct : found) nfct_destroy(ct);
  }
};

int Collect(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* m = static_cast<Matches*>(data);
  if (nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC) == m->address ||
      nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST) == m->address) {
    if (nf_conntrack* copy = nfct_clone(ct)) m->found.push_back(copy);
  }
  return NFCT_CB_CONTINUE;
}

// The entries of `address`, and a handle in the namespace to act on them.
Status Find(int netns_fd, uint32_t address, Handle& handle, Matches& matches) {
  {
    // The socket is made in the namespace and stays there.
    NetnsVisit in = TRY(NetnsVisit::Enter(netns_fd));
    handle.h = nfct_open(CONNTRACK, 0);
  }
  if (handle.h == nullptr) return Err(Error::FromErrno("ctnetlink: open"));
  matches.address = htonl(address);
  if (nfct_callback_register(handle.h, NFCT_T_ALL, Collect, &matches) != 0) {
    return Err(Error::FromErrno("ctnetlink: callback"));
  }
  uint32_t family = AF_INET;
  if (nfct_query(handle.h, NFCT_Q_DUMP, &family) != 0) {
    // No conntrack in this kernel or namespace: nothing is tracked.
    if (errno == EOPNOTSUPP || errno == ENOENT || errno == EPROTONOSUPPORT) return {};
    return Err(Error::FromErrno("ctnetlink: dump"));
  }
  nfct_callback_unregister(handle.h);
  return {};
}

}  // namespace

Result<size_t> CountConnections(int netns_fd, uint32_t address) {
  Handle handle;
  Matches matches;
  TRY(Find(netns_fd, address, handle, matches));
  return matches.found.size();
}

Result<size_t> ForgetConnections(int netns_fd, uint32_t address) {
  Handle handle;
  Matches matches;
  TRY(Find(netns_fd, address, handle, matches));
  size_t gone = 0;
  for (nf_conntrack* ct : matches.found) {
    if (nfct_query(handle.h, NFCT_Q_DESTROY, ct) == 0) {
      ++gone;
    } else if (errno != ENOENT) {
      return Err(Error::FromErrno("ctnetlink: delete an entry"));
    }
  }
  return gone;
}

}  // namespace tessera::net
