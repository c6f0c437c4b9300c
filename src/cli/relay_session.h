#pragma once
// The client side of a request whose caller's streams are relayed through
// tesserad: `tessera run` (qube.run) and `tessera call` (rpc.call). Sends the
// request, then relays stdin/stdout/stderr with end-to-end credit, forwards
// signals (and, with a tty, window sizes and raw mode), and returns the exit
// status the response gives (125 when tessera itself failed).
//
//   RelaySession session({.method = "rpc.call", .label = "tessera call"});
//   return session.Run(json{{"target", "work"}, {"service", "test.Echo"}});

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace tessera::cli {

inline constexpr int kExitRelayFailure = 125;

struct RelayOptions {
  std::string method = "qube.run";
  std::string label = "tessera run";  // prefix of messages
  bool tty = false;                   // a pty in the qube; this terminal goes raw meanwhile
  bool relay = true;                  // false: pass this process's stdio as descriptors
  bool detach = false;                // no streams at all
  bool filter = true;                 // escape control characters reaching a terminal
  // Give up (125) when the other side has not started within this long.
  std::optional<std::chrono::milliseconds> start_timeout;
};

// The exit status for a response's error code: 127 not found, 126 not
// executable or refused by policy, else 125.
int ExitForCode(const std::string& code);

class RelaySession {
 public:
  explicit RelaySession(const RelayOptions& options);
  ~RelaySession();
  int Run(nlohmann::json params);
  // The daemon answered relay_required (a qube that cannot take descriptors).
  bool relay_required() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::cli
