#pragma once
// The streams of an RPC call between two cells, moved pipe to pipe with
// splice(2) (docs/RPC.md "Streams"): the data never enters the daemon's
// memory, yet every byte is counted here (the audit line's bytes_in and
// bytes_out), and the kernel's pipe buffers are all the buffering there is,
// so a slow reader stops its writer. EOF passes through as the close of the
// next pipe's write end; a reader gone ends that direction and closes the
// pipe feeding it, so its writer sees EPIPE.
//
//   auto relay = TRY(PipeRelay::Start(loop, {caller_in_r, service_in_w},
//                                     {service_out_r, caller_out_w}, [&] { OutputDone(); }));

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "daemon/event_loop.h"

namespace tessera::daemon {

class PipeRelay {
 public:
  // The read end of one pipe and the write end of the next.
  struct Ends {
    UniqueFd from;
    UniqueFd to;
  };
  // Each pipe's capacity: what a call may hold in the kernel per pipe.
  static constexpr int kPipeSize = 256 << 10;

  // Relays `in` (caller -> service) and `out` (service -> caller);
  // `out_done` runs once the output has all gone through (or its reader went).
  static Result<std::unique_ptr<PipeRelay>> Start(EventLoop& loop, Ends in, Ends out,
                                                  std::function<void()> out_done);
  ~PipeRelay();

  uint64_t bytes_in() const;
  uint64_t bytes_out() const;
  bool out_done() const;
  // Why the output stopped early ("" when it ended normally: EOF, or its
  // reader went away).
  const std::string& out_error() const;
  // The command exited: the output ends once what it wrote has gone
  // through, even if a process it left behind keeps its stdout open (as a
  // framed call ends at the command's exit). `out_done` runs later, never
  // from inside this call.
  void FinishOutputWhenDrained();

 private:
  class Direction;
  PipeRelay() = default;

  std::unique_ptr<Direction> in_;
  std::unique_ptr<Direction> out_;
};

// Makes a pipe (O_CLOEXEC) of PipeRelay::kPipeSize where the system allows.
Result<PipeRelay::Ends> MakeRelayPipe();

}  // namespace tessera::daemon
