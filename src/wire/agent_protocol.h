#pragma once
// Exec sessions on the agent channel: how the host runs a command in a qube
// through its tessera-agent. One channel (a connected stream) carries any
// number of sessions, each named by the frame header's session id, chosen by
// the host. docs/CELL.md "Agent channel" has the full description.
//
//   host                                        agent
//   hello {"version":1}                  ─────▶
//                                        ◀─────  hello {"version":1}
//   open S {argv,env,cwd,user,stdio} +fds ────▶  spawns the command
//                                        ◀─────  started S pid | error S {code,message}
//   data S stdin / eof S stdin           ─────▶  (only for stdio "pipe")
//                                        ◀─────  credit S stdin N
//                                        ◀─────  data S stdout|stderr, eof S ...
//   credit S stdout|stderr N             ─────▶
//   signal S N  (to its process group)   ─────▶
//   close S     (hang up)                ─────▶
//                                        ◀─────  exit S status   (ends S)
//
// Flow control: each side may send kInitialWindow bytes of data per stream
// of a session without being asked; after that only as much as the receiver
// granted with credit frames, which it sends as it consumes data. Neither side
// ever buffers more than a window per stream, however slow the other is.
//
// Stdio "fd" passes the caller's descriptor to the command directly (a cell
// fast path: the data never crosses the host); "pipe" relays it as frames (a
// VM's only choice, and how terminals are kept out of qubes).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera::wire {

inline constexpr int kAgentProtocolVersion = 1;
inline constexpr uint32_t kInitialWindow = 256u << 10;
inline constexpr size_t kMaxArgs = 4096;

enum class Stdio : uint8_t { kNull, kFd, kPipe };

struct OpenMessage {
  std::vector<std::string> argv;  // non-empty; argv[0] a path or a name looked up in PATH
  std::vector<std::string> env;   // "K=V"; empty = a minimal default (PATH, HOME, TERM)
  std::string cwd = "/";          // absolute
  std::string user = "root";      // "root", a name in the qube's /etc/passwd, or "UID[:GID]"
  Stdio stdio[3] = {Stdio::kNull, Stdio::kNull, Stdio::kNull};
};

// Descriptors an open message needs attached: one per kFd entry, in stdio order.
size_t FdsNeeded(const OpenMessage& message);

Result<OpenMessage> ParseOpen(std::string_view payload, size_t attached_fds);
std::string SerializeOpen(const OpenMessage& message);

// Why a session did not start: 127 no such command, 126 not executable, 125
// anything else (the message says what).
struct SessionError {
  int code = 125;
  std::string message;
};
Result<SessionError> ParseSessionError(std::string_view payload);
std::string SerializeSessionError(const SessionError& error);

struct Hello {
  int version = kAgentProtocolVersion;
};
Result<Hello> ParseHello(std::string_view payload);
std::string SerializeHello(const Hello& hello);

}  // namespace tessera::wire
