#pragma once
// tessera-agent's event loop: channels from the host on the inherited control
// socket, exec sessions on them (wire/agent_protocol.h), reaping of every
// process of the qube, and shutdown on the host's SIGTERM. Single threaded; one
// poll() over every descriptor it owns.
//
// As a cell's PID 1 it also serves RPC calls of programs in the qube
// (agent_calls.cc): tessera-call connects to wire::kAgentCallSocket, and the
// call goes to the host on the channel the host marked for calls.
//
//   Agent agent(std::move(control), namespaces, reset_oom_score);
//   return agent.Run();   // returns only on a fatal error

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/process_session.h"
#include "agent/spawn.h"
#include "common/unique_fd.h"
#include "wire/frame.h"
#include "wire/socket_io.h"

namespace tessera::agent {

inline constexpr size_t kMaxChannels = 16;
inline constexpr size_t kMaxSessionsPerChannel = 1024;
// After a hang-up (close frame, channel lost), how long the session's process
// group has between SIGHUP and SIGKILL.
inline constexpr int kHangupGraceMs = 2000;
// A channel whose host reads nothing stops our reading of command output once
// this much is queued for it (credits bound it anyway; this bounds control
// frames too).
inline constexpr size_t kMaxQueuedPerChannel = 4u << 20;
// Calls programs in the qube may have open at once (tessera-call connections
// to kAgentCallSocket); the host limits what runs, this bounds our table.
inline constexpr size_t kMaxLocalCalls = 256;

class Agent {
 public:
  Agent(UniqueFd control, CommandNamespaces namespaces, bool reset_oom_score);
  int Run();

 private:
  // Sessions and channels are named by serial numbers, never by pointers held
  // across a poll round: any handler may end any of them. Ended ones are
  // marked and swept at the end of the round.
  struct Session {
    uint64_t serial = 0;
    uint32_t id = 0;           // the host's session id on its channel
    uint64_t channel = 0;      // serial of its channel; 0 once that is gone
    std::string program;
    pid_t pid = -1;
    bool started = false;      // exec succeeded and "started" was sent
    bool exited = false;
    bool dead = false;         // swept at the end of the round
    int status = 0;            // exit status as a shell reports it
    UniqueFd report;           // spawn report pipe until the exec is settled
    UniqueFd stdin_pipe;       // relayed stdin: our write end
    std::string stdin_pending;
    uint64_t stdin_window = 0;    // bytes the host may still send without credit
    uint64_t stdin_consumed = 0;  // written or dropped, not yet credited back
    bool stdin_eof = false;       // close stdin_pipe once pending is written
    UniqueFd out[2];              // relayed stdout, stderr: our read ends
    UniqueFd pty;                 // tty sessions: the terminal's master (also behind
                                  // stdin_pipe and out[0], as duplicates)
    bool detach = false;          // runs on alone once started
    bool tty = false;             // its master comes with the spawn report
    std::vector<int> pending_signals;  // sent before its exec was settled
    uint64_t out_credit[2] = {0, 0};
    int64_t kill_deadline_ms = -1;  // after a hang-up: SIGKILL the group then
  };
  struct Channel {
    uint64_t serial = 0;
    UniqueFd fd;
    wire::FrameDecoder decoder{wire::DecoderRules::AgentSide()};
    wire::OutQueue out;
    std::map<uint32_t, uint64_t> sessions;  // host session id -> session serial
    std::map<uint32_t, uint64_t> calls;     // call id -> local call serial, until the host ends it
    bool dead = false;
  };
  // One tessera-call connection: one call.
  struct LocalCall {
    uint64_t serial = 0;
    UniqueFd fd;
    wire::FrameDecoder decoder{wire::DecoderRules::CallServer()};
    wire::OutQueue out;
    uint32_t id = 0;            // its id on the call channel; 0 before its call frame
    uint64_t channel = 0;       // serial of that channel
    uint64_t stdin_window = 0;  // stdin the host granted and the caller has not sent
    bool ended = false;         // it got its exit or error: closed once that is written
    bool dead = false;
  };

  Session* FindSession(uint64_t serial);
  Channel* FindChannel(uint64_t serial);
  void Accept();
  void ReadChannel(Channel& channel);
  void FlushChannel(Channel& channel);
  void DropChannel(Channel& channel);
  bool HandleFrame(Channel& channel, wire::Frame& frame);  // false: protocol violation
  bool Open(Channel& channel, wire::Frame& frame);
  void SendError(Channel& channel, uint32_t id, int code, const std::string& message);
  void Send(Session& session, wire::FrameType type, uint8_t stream, std::string_view payload);
  void SettleSpawn(Session& session);
  void PumpOutput(Session& session, int index);
  void WriteStdin(Session& session);
  void HangUp(Session& session);
  void MaybeFinish(Session& session);
  void EndSession(Session& session);
  // After a session's command exited: what it left in its session is hung
  // up now and killed kHangupGraceMs later.
  void EndLeftovers(pid_t session_id);
  void KillOverdueLeftovers(int64_t now, int* timeout);
  // agent_calls.cc
  void ListenForCalls();
  LocalCall* FindCall(uint64_t serial);
  void AcceptCall();
  void ReadCall(LocalCall& call);
  void FlushCall(LocalCall& call);
  void DropCall(LocalCall& call);
  bool HandleLocalFrame(LocalCall& call, wire::Frame& frame);  // false: the caller broke the rules
  bool HandleHostCallFrame(Channel& channel, wire::Frame& frame);  // false: the host did
  void EndCall(LocalCall& call, int code, const std::string& message);
  void CallChannelLost(Channel& channel);

  void HandleSignals();
  void ReapChildren();
  void Sweep();
  [[noreturn]] void Shutdown();

  UniqueFd control_;
  UniqueFd signal_fd_;
  CommandNamespaces namespaces_;
  bool reset_oom_score_;
  uint64_t next_serial_ = 1;
  std::map<uint64_t, std::unique_ptr<Channel>> channels_;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::map<pid_t, uint64_t> by_pid_;  // command pid -> session serial
  std::map<pid_t, int64_t> leftovers_;  // session id of an exited command -> SIGKILL time
  UniqueFd call_listener_;
  uint64_t call_channel_ = 0;  // the channel the host takes calls on (hello version 2)
  uint32_t next_call_id_ = 1;
  std::map<uint64_t, std::unique_ptr<LocalCall>> calls_;
};

}  // namespace tessera::agent
