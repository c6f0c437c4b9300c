#include "cli/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace tessera::cli {

LocalTerminal::LocalTerminal(int fd) : fd_(fd) {
  termios t{};
  if (::isatty(fd) == 1 && ::tcgetattr(fd, &t) == 0) saved_ = t;
}

LocalTerminal::~LocalTerminal() { Restore(); }

void LocalTerminal::MakeRaw() {
  if (!saved_ || raw_) return;
  termios t = *saved_;
  ::cfmakeraw(&t);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  while (::tcsetattr(fd_, TCSADRAIN, &t) != 0 && errno == EINTR) {
  }
  raw_ = true;
}

void LocalTerminal::Restore() {
  if (!saved_) return;
  // Always, not only after MakeRaw: whatever changed the settings meanwhile,
  // the caller gets back the terminal it had.
  while (::tcsetattr(fd_, TCSADRAIN, &*saved_) != 0 && errno == EINTR) {
  }
  raw_ = false;
}

wire::WindowSize WindowSizeOf(std::initializer_list<int> fds) {
  for (int fd : fds) {
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
      return wire::WindowSize{ws.ws_row, ws.ws_col};
    }
  }
  return wire::WindowSize{};
}

}  // namespace tessera::cli
