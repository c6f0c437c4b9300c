// tessera-hardening-probe: issues the calls the hardening tests
// (tests/integration/cell/hardening_test.cc) need and busybox cannot make.
// Prints "ok" or "errno=N" (exit 0 / 1), or a result line; 2 on bad usage.
// Static, no tessera code: it runs inside cells whose template has no libc.
//
//   nr N [A0..A5]     raw syscall N with integer arguments
//   io_setup | io_destroy | io_submit | io_cancel | io_getevents | io_pgetevents
//   ptys N [hold]     opens /dev/ptmx up to N times; "opened=K errno=E"; with
//                     "hold", keeps them open until killed
//   vsock             socket(AF_VSOCK, SOCK_STREAM, 0)
//   tiocsti FD TEXT   pushes TEXT into the input of the terminal on FD (TIOCSTI)
//   tiocsctty FD      makes the terminal on FD this session's controlling one
//                     (after setsid; TIOCSCTTY with force)

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int Report(long rc) {
  if (rc < 0) {
    std::printf("errno=%d\n", errno);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: tessera-hardening-probe WHAT [ARGS]\n");
    return 2;
  }
  const char* what = argv[1];
  auto is = [&](const char* s) { return std::strcmp(what, s) == 0; };
  if (is("nr") && argc >= 3) {
    long a[6] = {};
    for (int i = 0; i < 6 && 3 + i < argc; ++i) a[i] = std::strtol(argv[3 + i], nullptr, 0);
    return Report(syscall(std::strtol(argv[2], nullptr, 0), a[0], a[1], a[2], a[3], a[4], a[5]));
  }
  // Kernel AIO: a context would come from the host-wide aio-max-nr pool.
  unsigned long ctx = 0;
  if (is("io_setup")) return Report(syscall(SYS_io_setup, 1, &ctx));
  if (is("io_destroy")) return Report(syscall(SYS_io_destroy, ctx));
  if (is("io_submit")) return Report(syscall(SYS_io_submit, ctx, 0, nullptr));
  if (is("io_cancel")) return Report(syscall(SYS_io_cancel, ctx, nullptr, nullptr));
  if (is("io_getevents")) return Report(syscall(SYS_io_getevents, ctx, 0, 0, nullptr, nullptr));
  if (is("io_pgetevents")) {
    return Report(syscall(SYS_io_pgetevents, ctx, 0, 0, nullptr, nullptr, nullptr));
  }
  if (is("ptys") && (argc == 3 || argc == 4)) {
    long want = std::strtol(argv[2], nullptr, 10);
    long opened = 0;
    int err = 0;
    for (; opened < want; ++opened) {
      if (open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC) < 0) {
        err = errno;
        break;
      }
    }
    std::printf("opened=%ld errno=%d\n", opened, err);
    std::fflush(stdout);
    if (argc == 4 && std::strcmp(argv[3], "hold") == 0) {
      for (;;) pause();
    }
    return 0;
  }
  if (is("tiocsti") && argc == 4) {
    int fd = static_cast<int>(std::strtol(argv[2], nullptr, 10));
    for (const char* c = argv[3]; *c != '\0'; ++c) {
      if (ioctl(fd, TIOCSTI, c) != 0) return Report(-1);
    }
    return Report(0);
  }
  if (is("tiocsctty") && argc == 3) {
    int fd = static_cast<int>(std::strtol(argv[2], nullptr, 10));
    setsid();
    return Report(ioctl(fd, TIOCSCTTY, 1));
  }
  if (is("vsock")) return Report(socket(40 /*AF_VSOCK*/, SOCK_STREAM | SOCK_CLOEXEC, 0));
  std::fprintf(stderr, "tessera-hardening-probe: unknown probe %s\n", what);
  return 2;
}
