#pragma once
// The caller's terminal during `tessera run`: its settings saved and put back
// (on every way out that still runs code), raw mode while a qube's pty is
// relayed, and its window size.
//
//   LocalTerminal term(STDIN_FILENO);
//   if (interactive) term.MakeRaw();
//   ... on SIGTSTP: term.Restore(); raise(SIGSTOP); term.MakeRaw(); ...
//   // destructor: the settings as they were

#include <termios.h>

#include <optional>

#include "wire/agent_protocol.h"

namespace tessera::cli {

class LocalTerminal {
 public:
  explicit LocalTerminal(int fd);  // fd may be no terminal: then nothing happens
  ~LocalTerminal();
  LocalTerminal(const LocalTerminal&) = delete;
  LocalTerminal& operator=(const LocalTerminal&) = delete;

  // No echo, no line editing, no signals from keys: every byte goes to the qube.
  void MakeRaw();
  // The settings saved at construction.
  void Restore();
  bool raw() const { return raw_; }

 private:
  int fd_;
  std::optional<termios> saved_;
  bool raw_ = false;
};

// The window size of the first of `fds` that is a terminal (24x80 if none).
wire::WindowSize WindowSizeOf(std::initializer_list<int> fds);

}  // namespace tessera::cli
