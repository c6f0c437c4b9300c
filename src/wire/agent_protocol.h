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
//   resize S rows<<16|cols (tty sessions) ────▶
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
// VM's only choice, and how terminals are kept out of qubes). A "tty" session
// gets a pseudo-terminal made inside the qube: its stdin is written to the
// terminal, everything the command writes to it comes back as stdout.
//
// When a session's command exits, what it left running in its session is
// hung up (SIGHUP, SIGKILL after a grace period), so nothing it started
// outlives it on the caller's streams; a "detach" session is left alone.
//
// Calls (docs/RPC.md): the host marks the channel it takes a qube's RPC calls
// on with hello {"version":2}; the agent answers 2. A program in the qube
// (tessera-call) connects to the agent's socket kAgentCallSocket, sends one
// `call` frame {target, service} and then plays the host's part of a session
// (data/eof on stdin, credit for stdout/stderr, close); the agent re-frames
// it as a call session on that channel, under an id it picks with
// kCallSessionBit set, and the host plays the agent's part back (started,
// credit for stdin, data/eof on stdout/stderr, then exit or error). The call
// names no source: the host knows whose channel it came on.
//
//   tessera-call          agent                     host
//   call {target,service} ────▶ call C {target,service} ────▶ policy, target
//                         ◀──── started C          ◀──── (the service runs)
//   data/eof/credit       ◀───▶ same, session C    ◀───▶
//                         ◀──── exit C status | error C {code 125|126|127}

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace tessera::wire {

inline constexpr int kAgentProtocolVersion = 1;
// hello {"version": kCallChannelVersion} from the host: take calls on this channel.
inline constexpr int kCallChannelVersion = 2;
// Session ids of calls (chosen by the agent) have this bit; the host's never do.
inline constexpr uint32_t kCallSessionBit = 0x80000000u;
// Where tessera-call finds the agent, inside a qube.
inline constexpr const char* kAgentCallSocket = "/run/tessera/agent.sock";
inline constexpr uint32_t kInitialWindow = 256u << 10;
// The most a clipboard holds, on the host and in a qube (Qubes' GUI
// protocol's MAX_CLIPBOARD_SIZE).
inline constexpr size_t kMaxClipboard = 65000;
inline constexpr size_t kMaxArgs = 4096;

enum class Stdio : uint8_t { kNull, kFd, kPipe };

struct WindowSize {
  uint16_t rows = 24;
  uint16_t cols = 80;
  bool operator==(const WindowSize&) const = default;
};

// An RPC service call (docs/RPC.md) instead of a program: the agent looks the
// service up in the qube's RPC directories (ServiceCandidates) and runs it
// with the argument as argv[1] and the QREXEC_* environment; a Unix socket
// found there is connected to, after the descriptor line.
struct ServiceCall {
  std::string name;              // "qubes.Filecopy": 1..64 of [A-Za-z0-9._-], not "." or ".."
  std::string argument;          // without the '+'; "" = none; ≤ 255 of [A-Za-z0-9._+-]
  std::string source;            // the calling qube ("dom0" for the host)
  std::string requested_target;  // what the caller asked for ("@default", "@dispvm:x", a name)
  // "SERVICE" or "SERVICE+ARG".
  std::string FullName() const { return argument.empty() ? name : name + "+" + argument; }
  bool operator==(const ServiceCall&) const = default;
};

// Where a service is looked up, first existing entry wins: for SERVICE+ARG,
// then SERVICE, in /usr/local/etc/qubes-rpc, /usr/local/etc/tessera-rpc,
// /etc/qubes-rpc, /etc/tessera-rpc (Qubes' order, with tessera's own
// directory after each of Qubes'), and last the built-in services of the
// qube tools, /run/tessera/tools/rpc (qubes.Filecopy, qubes.WaitForSession).
std::vector<std::string> ServiceCandidates(const ServiceCall& call);
// The word rules of ServiceCall::name (plus_allowed false) and ::argument.
bool IsServiceWord(std::string_view word, bool plus_allowed);

struct OpenMessage {
  // Non-empty unless `service` is set (then empty); argv[0] a path or a name
  // looked up in PATH.
  std::vector<std::string> argv;
  std::optional<ServiceCall> service;
  // "K=V", set on top of the default environment (PATH, HOME, USER, LOGNAME,
  // SHELL; TERM=dumb, or xterm-256color with a tty) and replacing its entries.
  std::vector<std::string> env;
  std::string cwd;                // absolute; empty = the user's home (or / without one)
  std::string user = "root";      // "root", a name in the qube's /etc/passwd, or "UID[:GID]"
  Stdio stdio[3] = {Stdio::kNull, Stdio::kNull, Stdio::kNull};
  // A pseudo-terminal in the qube of this size; then stdio is pipe, pipe,
  // null (the terminal is the command's 0, 1 and 2; its output is stdout).
  std::optional<WindowSize> tty;
  // The command runs on alone: started is the last frame of the session, it
  // is never hung up or waited for. stdio must be null.
  bool detach = false;
};

// Descriptors an open message needs attached: one per kFd entry, in stdio order.
size_t FdsNeeded(const OpenMessage& message);
// What a session runs, for messages: argv[0], or "service SERVICE[+ARG]".
std::string ProgramName(const OpenMessage& message);

Result<OpenMessage> ParseOpen(std::string_view payload, size_t attached_fds);
std::string SerializeOpen(const OpenMessage& message);

// The payload of a resize frame (both 1..65535).
std::string EncodeWindowSize(WindowSize size);
Result<WindowSize> DecodeWindowSize(std::string_view payload);

// Why a session did not start: 127 no such command, 126 not executable, 125
// anything else (the message says what).
struct SessionError {
  int code = 125;
  std::string message;
};
Result<SessionError> ParseSessionError(std::string_view payload);
std::string SerializeSessionError(const SessionError& error);

// An RPC call a qube makes: what it asks for, never who it is.
struct CallMessage {
  std::string target;   // a qube or a policy token ("@dispvm"); "" = @default
  std::string service;  // SERVICE[+ARG]
  bool operator==(const CallMessage&) const = default;
};
// Strict: only these keys, target ≤ 128 bytes, service 1..320 bytes, no NUL.
// The policy grammar is checked by the host (rpc::ValidateCall).
Result<CallMessage> ParseCall(std::string_view payload);
std::string SerializeCall(const CallMessage& call);

struct Hello {
  int version = kAgentProtocolVersion;
};
Result<Hello> ParseHello(std::string_view payload);
std::string SerializeHello(const Hello& hello);

}  // namespace tessera::wire
