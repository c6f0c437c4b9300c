#pragma once
// One file descriptor passed with a small fixed-size message (SCM_RIGHTS) on a
// SOCK_SEQPACKET socket: the seccomp listener from the cell's child to its
// starter. Inline and async-signal-safe (stack buffers, one system call each):
// the post-clone child uses it.

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>

namespace tessera::cell {

// A msghdr over one data buffer with control room for one fd.
struct OneFdMessage {
  OneFdMessage(void* data, size_t size) : iov{data, size} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
  OneFdMessage(const OneFdMessage&) = delete;
  OneFdMessage& operator=(const OneFdMessage&) = delete;

  iovec iov;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
};

// Sends `size` bytes of `data` with `fd` attached. Returns sendmsg's result.
inline ssize_t SendWithFd(int sock, const void* data, size_t size, int fd) {
  OneFdMessage m(const_cast<void*>(data), size);
  msghdr& msg = m.msg;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

// Receives up to `size` bytes into `data`; `*fd` is the one fd attached
// (O_CLOEXEC), or -1 if none. Returns recvmsg's result; -1 with EPROTO when
// the control data was truncated (more than one fd: the kernel closes what
// did not fit; the one received, if any, is still in `*fd`).
inline ssize_t RecvWithFd(int sock, void* data, size_t size, int* fd) {
  *fd = -1;
  OneFdMessage m(data, size);
  msghdr& msg = m.msg;
  ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (cmsg != nullptr && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
      cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
    std::memcpy(fd, CMSG_DATA(cmsg), sizeof(int));
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    errno = EPROTO;
    return -1;
  }
  return n;
}

}  // namespace tessera::cell
