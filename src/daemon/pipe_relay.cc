#include "daemon/pipe_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tessera::daemon {

namespace {

constexpr size_t kSpliceChunk = 1 << 20;
// Splices per wake-up before the loop serves others (a fast pair of qubes
// must not starve the rest).
constexpr int kBudget = 32;

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

class PipeRelay::Direction {
 public:
  Direction(Ends ends, std::function<void()> done)
      : ends_(std::move(ends)), done_(std::move(done)) {}

  Status Watch(EventLoop& loop) {
    loop_ = &loop;
    SetNonBlocking(ends_.from.get());
    SetNonBlocking(ends_.to.get());
    auto from = loop.WatchFd(ends_.from.get(), EPOLLIN, [this](uint32_t) { Pump(); });
    if (!from) return Err(from.error());
    from_watch_ = std::move(*from);
    auto to = loop.WatchFd(ends_.to.get(), EPOLLOUT, [this](uint32_t) { Pump(); });
    if (!to) return Err(to.error());
    to_watch_ = std::move(*to);
    loop.SetEvents(to_watch_, 0);
    return {};
  }

  uint64_t bytes() const { return bytes_; }
  bool finished() const { return finished_; }
  const std::string& error() const { return error_; }

  // The writer is done (the command exited): finish once what it left in
  // the pipe has gone through, even if something it started still holds
  // the pipe open. Never synchronously: `done_` may end the caller.
  void FinishWhenDrained() {
    if (finished_ || drain_only_) return;
    drain_only_ = true;
    kick_ = loop_->After(std::chrono::milliseconds(0), [this] {
      kick_.Reset();
      Pump();
    });
  }

 private:
  void Pump() {
    if (finished_) return;
    for (int i = 0; i < kBudget; ++i) {
      ssize_t n = ::splice(ends_.from.get(), nullptr, ends_.to.get(), nullptr, kSpliceChunk,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        bytes_ += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return Wait();
      // 0: the writer's end; EPIPE: the reader went. Both are normal ends;
      // anything else is an error the caller is told about.
      if (n < 0 && errno != EPIPE) error_ = std::string("splice: ") + std::strerror(errno);
      return Finish();
    }
    // Budget spent with data still flowing: the level-triggered watch on
    // `from` brings us back next round.
    loop_->SetEvents(from_watch_, EPOLLIN);
    loop_->SetEvents(to_watch_, 0);
  }

  // Nothing moved: either `from` is empty or `to` is full. Wait for the
  // one that blocks, never for both (a level-triggered wake-up for the
  // other would spin).
  void Wait() {
    int queued = 0;
    if (drain_only_ && ::ioctl(ends_.from.get(), FIONREAD, &queued) == 0 && queued == 0) {
      return Finish();  // all the exited writer wrote has gone through
    }
    pollfd p{ends_.to.get(), POLLOUT, 0};
    bool to_full = ::poll(&p, 1, 0) == 0;
    if (!to_full && (p.revents & (POLLERR | POLLHUP)) != 0) return Finish();
    loop_->SetEvents(from_watch_, to_full ? 0u : uint32_t{EPOLLIN});
    loop_->SetEvents(to_watch_, to_full ? uint32_t{EPOLLOUT} : 0u);
  }

  void Finish() {
    finished_ = true;
    kick_.Reset();
    from_watch_.Reset();
    to_watch_.Reset();
    ends_.from.reset();  // its writer sees EPIPE from now on
    ends_.to.reset();    // its reader sees the end
    // Last: `done_` may end the call, and this relay with it.
    if (done_) std::exchange(done_, nullptr)();
  }

  Ends ends_;
  std::function<void()> done_;
  EventLoop* loop_ = nullptr;
  EventLoop::Watch from_watch_;
  EventLoop::Watch to_watch_;
  EventLoop::Timer kick_;
  uint64_t bytes_ = 0;
  bool finished_ = false;
  bool drain_only_ = false;
  std::string error_;
};

Result<std::unique_ptr<PipeRelay>> PipeRelay::Start(EventLoop& loop, Ends in, Ends out,
                                                    std::function<void()> out_done) {
  std::unique_ptr<PipeRelay> relay(new PipeRelay());
  relay->in_ = std::make_unique<Direction>(std::move(in), nullptr);
  relay->out_ = std::make_unique<Direction>(std::move(out), std::move(out_done));
  TRY(relay->in_->Watch(loop));
  TRY(relay->out_->Watch(loop));
  return relay;
}

PipeRelay::~PipeRelay() = default;

uint64_t PipeRelay::bytes_in() const { return in_->bytes(); }
uint64_t PipeRelay::bytes_out() const { return out_->bytes(); }
bool PipeRelay::out_done() const { return out_->finished(); }
const std::string& PipeRelay::out_error() const { return out_->error(); }
void PipeRelay::FinishOutputWhenDrained() { out_->FinishWhenDrained(); }

Result<PipeRelay::Ends> MakeRelayPipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Err(Error::FromErrno("pipe2"));
  PipeRelay::Ends ends{UniqueFd(p[0]), UniqueFd(p[1])};
  (void)::fcntl(p[1], F_SETPIPE_SZ, PipeRelay::kPipeSize);  // best effort: the default works too
  return ends;
}

}  // namespace tessera::daemon
