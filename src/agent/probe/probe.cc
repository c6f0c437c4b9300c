// tessera-cell-probe: issues one syscall that busybox cannot, for the cell
// integration tests (tests/integration/cell/). Prints "ok" or "errno=N" and
// exits 0 if the call succeeded, 1 if it failed, 2 on bad usage. Static, no
// tessera code: it runs inside cells whose template has no libc.

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

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
    std::fprintf(stderr, "usage: tessera-cell-probe WHAT [ARGS]\n");
    return 2;
  }
  const char* what = argv[1];
  auto is = [&](const char* s) { return std::strcmp(what, s) == 0; };
  if (is("bpf")) {
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    return Report(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
  }
  if (is("perf_event_open")) {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.exclude_kernel = 1;
    return Report(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
  }
  if (is("keyctl")) return Report(syscall(SYS_keyctl, 0 /*KEYCTL_GET_KEYRING_ID*/, -3, 0));
  if (is("add_key")) {
    return Report(syscall(SYS_add_key, "user", "probe", "x", 1, -3 /*session keyring*/));
  }
  if (is("userfaultfd")) return Report(syscall(SYS_userfaultfd, O_CLOEXEC));
  if (is("init_module")) {
    static char image[64] = {0x7f, 'E', 'L', 'F'};
    return Report(syscall(SYS_init_module, image, sizeof(image), ""));
  }
  if (is("finit_module")) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    return Report(syscall(SYS_finit_module, fd, "", 0));
  }
  if (is("delete_module")) return Report(syscall(SYS_delete_module, "loop", O_NONBLOCK));
  if (is("kexec_load")) return Report(syscall(SYS_kexec_load, 0, 0, nullptr, 0));
  if (is("open_by_handle_at")) {
    char buf[sizeof(int) * 2 + 128] = {};
    return Report(syscall(SYS_open_by_handle_at, AT_FDCWD, buf, O_RDONLY));
  }
  if (is("reboot")) return Report(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, nullptr));
  if (is("settimeofday")) {
    timeval tv;
    gettimeofday(&tv, nullptr);
    return Report(settimeofday(&tv, nullptr));
  }
  if (is("clock_settime")) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return Report(clock_settime(CLOCK_REALTIME, &ts));
  }
  if (is("swapon")) return Report(swapon("/dev/null", 0));
  if (is("int80")) {
    // i386 getpid through the 32-bit entry: a foreign ABI, which the filter kills.
    long ret = 20;
    asm volatile("int $0x80" : "+a"(ret) : : "memory");
    return Report(ret);
  }
  if (is("swapoff")) return Report(syscall(SYS_swapoff, "/dev/null"));
  if (is("request_key")) return Report(syscall(SYS_request_key, "user", "probe", nullptr, 0));
  if (is("kexec_file_load")) return Report(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
  if (is("adjtimex")) {
    timex tx{};
    tx.modes = ADJ_OFFSET;  // a write: needs CAP_SYS_TIME in the initial namespace
    return Report(syscall(SYS_adjtimex, &tx));
  }
  if (is("acct")) return Report(syscall(SYS_acct, nullptr));
  if (is("syslog")) return Report(syscall(SYS_syslog, 10 /*SYSLOG_ACTION_SIZE_BUFFER*/, nullptr, 0));
  if (is("iopl")) return Report(syscall(SYS_iopl, 3));
  if (is("fanotify_init")) return Report(syscall(SYS_fanotify_init, 0, 0));
  if (is("io_uring_setup")) {
    char params[120] = {};  // struct io_uring_params
    return Report(syscall(SYS_io_uring_setup, 1, params));
  }
  if (is("personality") && argc == 3) {
    unsigned long p = std::strtoul(argv[2], nullptr, 0);
    return Report(syscall(SYS_personality, p));
  }
  if (is("unshare-user")) return Report(unshare(CLONE_NEWUSER));
  if (is("unshare-net")) return Report(unshare(CLONE_NEWNET));
  if (is("clone-user")) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return Report(pid);
  }
  if (is("ptrace") && argc == 3) {
    return Report(ptrace(PTRACE_ATTACH, static_cast<pid_t>(std::atoi(argv[2])), nullptr, nullptr));
  }
  if (is("vm-readv") && argc == 3) {
    // Reads a byte of the target's stack (where argv lives) as a debugger would.
    char byte;
    iovec local{&byte, 1};
    iovec remote{reinterpret_cast<void*>(0x7ffffffde000), 1};
    long rc = syscall(SYS_process_vm_readv, std::atoi(argv[2]), &local, 1, &remote, 1, 0);
    // EFAULT means the permission check passed (the address was just wrong).
    return Report(rc < 0 && errno == EFAULT ? 0 : rc);
  }
  if (is("pidfd-getfd") && argc == 4) {
    long pidfd = syscall(SYS_pidfd_open, std::atoi(argv[2]), 0);
    if (pidfd < 0) return Report(pidfd);
    return Report(syscall(SYS_pidfd_getfd, pidfd, std::atoi(argv[3]), 0));
  }
  if (is("open") && argc == 3) return Report(open(argv[2], O_RDONLY | O_CLOEXEC));
  if (is("mount") && argc == 5) {
    return Report(mount(argv[3], argv[4], argv[2], 0, nullptr));
  }
  if (is("alloc") && argc == 3) {
    // Allocates and touches N MiB, one page at a time.
    size_t mib = std::strtoul(argv[2], nullptr, 10);
    for (size_t i = 0; i < mib; ++i) {
      char* p = static_cast<char*>(mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (p == MAP_FAILED) return Report(-1);
      for (size_t off = 0; off < (1 << 20); off += 4096) p[off] = 1;
    }
    return Report(0);
  }
  if (is("forkbomb") && argc == 3) {
    // Forks until fork fails (pids.max), reports how many, then lets all go.
    long limit = std::atol(argv[2]);
    static pid_t children[1 << 16];
    if (limit > (1 << 16)) limit = 1 << 16;
    long count = 0;
    int err = 0;
    for (; count < limit; ++count) {
      pid_t p = fork();
      if (p < 0) {
        err = errno;
        break;
      }
      if (p == 0) {
        pause();
        _exit(0);
      }
      children[count] = p;
    }
    std::printf("forked=%ld errno=%d\n", count, err);
    std::fflush(stdout);
    for (long i = 0; i < count; ++i) kill(children[i], SIGKILL);
    for (long i = 0; i < count; ++i) waitpid(children[i], nullptr, 0);
    return 0;
  }
  std::fprintf(stderr, "tessera-cell-probe: unknown probe %s\n", what);
  return 2;
}
