#include "wire/socket_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tessera::wire {
namespace {

// sendmsg of `data` with `fds` attached (none if empty). Returns bytes sent,
// or -1 with errno.
ssize_t SendWithFds(int fd, const char* data, size_t size, std::span<const int> fds, bool nonblock) {
  iovec iov{const_cast<char*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerFrame)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace

Status SendAll(int fd, std::string_view bytes, std::span<const int> fds) {
  if (fds.size() > kMaxFdsPerFrame) return Err(Error("too many descriptors for one frame", EINVAL));
  size_t sent = 0;
  bool fds_sent = fds.empty();
  while (sent < bytes.size()) {
    ssize_t n = SendWithFds(fd, bytes.data() + sent, bytes.size() - sent,
                            fds_sent ? std::span<const int>() : fds, /*nonblock=*/false);
    if (n < 0) {
      if (errno == EAGAIN) {
        // A non-blocking socket used by a blocking caller: wait for room.
        pollfd p{fd, POLLOUT, 0};
        (void)::poll(&p, 1, -1);
        continue;
      }
      return Err(Error::FromErrno("send frame"));
    }
    fds_sent = true;
    sent += static_cast<size_t>(n);
  }
  return Ok();
}

Status WriteFrame(int fd, FrameType type, uint32_t session, uint8_t stream,
                  std::string_view payload, std::span<const int> fds) {
  if (fds.size() > kMaxFdsPerFrame) return Err(Error("too many descriptors for one frame", EINVAL));
  return SendAll(fd,
                 EncodeFrame(type, session, stream, payload, static_cast<uint8_t>(fds.size())),
                 fds);
}

Result<RecvResult> RecvInto(int fd, FrameDecoder* decoder, size_t max_bytes) {
  // One buffer per thread: the daemon's and the agent's loops each read on
  // one thread, and a frame is copied out of it by Feed anyway.
  static thread_local char buf[kRecvChunk];
  iovec iov{buf, std::min(sizeof(buf), max_bytes)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for one frame's descriptors plus one more, so that a peer attaching
  // too many is seen (MSG_CTRUNC) rather than silently cut.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFdsPerFrame + 1))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return RecvResult::kWouldBlock;
    return Err(Error::FromErrno("receive frame"));
  }
  // Own every received descriptor first, so every error path closes them.
  std::vector<UniqueFd> received;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int rfd;
      std::memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      received.emplace_back(rfd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return Err(Error("receive frame: too many descriptors attached", EPROTO));
  }
  if (!received.empty()) TRY(decoder->AddFds(std::move(received)));
  if (n == 0) return RecvResult::kEof;
  decoder->Feed(buf, static_cast<size_t>(n));
  return RecvResult::kProgress;
}

Result<std::optional<Frame>> ReadFrame(int fd, FrameDecoder* decoder) {
  for (;;) {
    if (auto frame = TRY(decoder->Next())) return frame;
    RecvResult r = TRY(RecvInto(fd, decoder));
    if (r == RecvResult::kEof) {
      if (decoder->buffered() == 0) return std::optional<Frame>{};
      return Err(Error("connection closed in the middle of a frame", ECONNRESET));
    }
    if (r == RecvResult::kWouldBlock) {
      pollfd p{fd, POLLIN, 0};
      int rc;
      do {
        rc = ::poll(&p, 1, -1);
      } while (rc < 0 && errno == EINTR);
    }
  }
}

void OutQueue::Push(std::string bytes, std::vector<UniqueFd> fds) {
  if (bytes.empty()) return;
  bytes_ += bytes.size();
  chunks_.push_back(Chunk{std::move(bytes), 0, std::move(fds)});
}

Result<bool> OutQueue::Flush(int fd) {
  while (!chunks_.empty()) {
    Chunk& c = chunks_.front();
    std::vector<int> raw;
    if (c.sent == 0) {
      for (const auto& f : c.fds) raw.push_back(f.get());
    }
    ssize_t n = SendWithFds(fd, c.bytes.data() + c.sent, c.bytes.size() - c.sent, raw,
                            /*nonblock=*/true);
    if (n < 0) {
      if (errno == EAGAIN) return false;
      return Err(Error::FromErrno("send frame"));
    }
    if (c.sent == 0) c.fds.clear();  // the peer has its own copies now
    c.sent += static_cast<size_t>(n);
    bytes_ -= static_cast<size_t>(n);
    if (c.sent == c.bytes.size()) chunks_.pop_front();
  }
  return true;
}

}  // namespace tessera::wire
