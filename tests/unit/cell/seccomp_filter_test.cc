// The seccomp filter compiles, and applied to a forked child it denies what it
// should and nothing ordinary (the real-cell checks are in the integration
// tests; this one runs without root).

#include "cell/seccomp_filter.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "cell/cgroups.h"
#include "cell/fd_passing.h"
#include "cell/seccomp_monitor.h"
#include "common/unique_fd.h"

namespace tessera::cell {
namespace {

// Runs `probe` in a child under the filter; returns its exit status.
template <class F>
int UnderFilter(const SeccompOptions& options, F probe) {
  auto prog = BuildSeccompFilter(options);
  EXPECT_TRUE(prog) << prog.error().ToString();
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ApplySeccompProgram(*prog) != 0) _exit(100);
    _exit(probe());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

int ErrnoOf(long rc) { return rc < 0 ? errno : 0; }

TEST(SeccompFilter, CompilesToAProgram) {
  auto prog = BuildSeccompFilter({});
  ASSERT_TRUE(prog) << prog.error().ToString();
  EXPECT_GT(prog->instructions.size(), 300u);    // an allow-list of ~300 calls
  EXPECT_LT(prog->instructions.size(), 4096u);  // BPF_MAXINSNS
  EXPECT_TRUE(prog->answers.empty());
  auto nested = BuildSeccompFilter({.nested_userns = true});
  ASSERT_TRUE(nested);
  EXPECT_NE(nested->instructions.size(), prog->instructions.size());
  auto notify = BuildSeccompFilter({.mode = SeccompMode::kNotify});
  ASSERT_TRUE(notify) << notify.error().ToString();
  EXPECT_EQ(notify->mode, SeccompMode::kNotify);
  EXPECT_EQ(notify->answers.size(), prog->instructions.size());  // the kErrno program
  // One compilation per options in a process.
  auto a = CachedSeccompFilter({.mode = SeccompMode::kNotify});
  auto b = CachedSeccompFilter({.mode = SeccompMode::kNotify});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->get(), b->get());
  EXPECT_NE(a->get(), CachedSeccompFilter({})->get());
}

bool SameProgram(const std::vector<sock_filter>& a, const std::vector<sock_filter>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(sock_filter)) == 0);
}

TEST(SeccompCache, FilesRoundTripAndAnythingElseIsRejected) {
  for (SeccompOptions options : {SeccompOptions{}, SeccompOptions{.mode = SeccompMode::kNotify},
                                 SeccompOptions{.nested_userns = true}}) {
    auto built = BuildSeccompFilter(options);
    ASSERT_TRUE(built) << built.error().ToString();
    std::string file = SerializeSeccompProgram(options, *built);
    auto parsed = ParseSeccompProgram(options, file);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->mode, options.mode);
    EXPECT_TRUE(SameProgram(parsed->instructions, built->instructions));
    EXPECT_TRUE(SameProgram(parsed->answers, built->answers));
    // Every flipped byte is caught (checksum, magic, counts), as is any cut or addition.
    for (size_t i = 0; i < file.size(); i += 7) {
      std::string bad = file;
      bad[i] = static_cast<char>(bad[i] ^ 0x20);
      EXPECT_FALSE(ParseSeccompProgram(options, bad)) << "byte " << i;
    }
    EXPECT_FALSE(ParseSeccompProgram(options, file.substr(0, file.size() - 1)));
    EXPECT_FALSE(ParseSeccompProgram(options, file + "x"));
    EXPECT_FALSE(ParseSeccompProgram(options, ""));
    // A file of other options is not this one's.
    SeccompOptions other = options;
    other.nested_userns = !options.nested_userns;
    EXPECT_FALSE(ParseSeccompProgram(other, file));
  }
}

TEST(SeccompCache, TheDiskCacheIsWrittenReadAndRepaired) {
  char tmpl[] = "/tmp/tessera-seccomp-cache-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = std::string(tmpl) + "/seccomp";
  SeccompOptions options{.mode = SeccompMode::kNotify};
  auto first = LoadOrBuildSeccompFilter(options, dir);
  ASSERT_TRUE(first) << first.error().ToString();
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') files.push_back(dir + "/" + e->d_name);
    }
    ::closedir(d);
  }
  ASSERT_EQ(files.size(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(files[0].c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = LoadOrBuildSeccompFilter(options, dir);
  ASSERT_TRUE(second);
  EXPECT_TRUE(SameProgram(second->instructions, first->instructions));
  EXPECT_TRUE(SameProgram(second->answers, first->answers));
  // A damaged file is not used: the program is rebuilt and the file rewritten.
  {
    std::FILE* f = std::fopen(files[0].c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 40, SEEK_SET);
    std::fputc('X', f);
    std::fclose(f);
  }
  auto third = LoadOrBuildSeccompFilter(options, dir);
  ASSERT_TRUE(third);
  EXPECT_TRUE(SameProgram(third->instructions, first->instructions));
  std::FILE* f = std::fopen(files[0].c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string repaired;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) repaired.append(buf, n);
  std::fclose(f);
  EXPECT_TRUE(ParseSeccompProgram(options, repaired));
  std::string cmd = std::string("rm -rf ") + tmpl;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(SeccompFilter, UnlistedAndAioCallsFailWithEnosys) {
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_sysfs, 3)); }), ENOSYS);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_vhangup)); }), ENOSYS);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_modify_ldt, 0, nullptr, 0)); }), ENOSYS);
  unsigned long ctx = 0;
  EXPECT_EQ(UnderFilter({}, [&] { return ErrnoOf(syscall(SYS_io_setup, 1, &ctx)); }), ENOSYS);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_io_submit, 0, 0, nullptr)); }), ENOSYS);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_io_getevents, 0, 0, 0, nullptr, nullptr)); }),
            ENOSYS);
  // vsock reaches host services no namespace separates.
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(::socket(40 /*AF_VSOCK*/, SOCK_STREAM, 0)); }), EPERM);
  EXPECT_NE(UnderFilter({}, [] { return ErrnoOf(::socket(AF_UNIX, SOCK_STREAM, 0)); }), EPERM);
}

TEST(SeccompFilter, ForeignAbisKill) {
  // x32: the x32 bit on a native number.
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(0x40000000 | SYS_getpid)); }), 200 + SIGSYS);
}

seccomp_data Data(int nr, uint64_t a0 = 0, uint32_t arch = AUDIT_ARCH_X86_64) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = arch;
  d.args[0] = a0;
  return d;
}

// The user-space evaluation of a program (which the monitor answers with)
// gives what the kernel does with it.
TEST(SeccompFilter, EvaluationMatchesTheKernel) {
  auto prog = BuildSeccompFilter({});
  ASSERT_TRUE(prog);
  struct Case {
    int nr;
    uint64_t a0;
    long (*call)();
  };
  const Case cases[] = {
      {SYS_getppid, 0, [] { return syscall(SYS_getppid); }},
      {SYS_bpf, 0, [] { return syscall(SYS_bpf, 0, nullptr, 0); }},
      {SYS_keyctl, 0, [] { return syscall(SYS_keyctl, 0, -3, 0); }},
      {SYS_io_setup, 0, [] { return syscall(SYS_io_setup, 0, nullptr); }},
      {SYS_sysfs, 3, [] { return syscall(SYS_sysfs, 3); }},
      {SYS_clone3, 0, [] { return syscall(SYS_clone3, nullptr, 0); }},
      {SYS_personality, ADDR_NO_RANDOMIZE,
       [] { return syscall(SYS_personality, ADDR_NO_RANDOMIZE); }},
      {SYS_personality, 0xffffffffu, [] { return syscall(SYS_personality, 0xffffffffUL); }},
      {SYS_personality, 0x80000001u, [] { return syscall(SYS_personality, 0x80000001UL); }},
      {SYS_unshare, CLONE_NEWUSER, [] { return syscall(SYS_unshare, CLONE_NEWUSER); }},
      {SYS_socket, 40, [] { return syscall(SYS_socket, 40, SOCK_STREAM, 0); }},
      {SYS_socket, AF_UNIX, [] { return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0); }},
  };
  for (const Case& c : cases) {
    uint32_t ret = EvaluateSeccompProgram(prog->instructions, Data(c.nr, c.a0));
    int expected = (ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO
                       ? static_cast<int>(ret & SECCOMP_RET_DATA)
                       : 0;
    EXPECT_EQ(ret & SECCOMP_RET_ACTION_FULL,
              expected != 0 ? SECCOMP_RET_ERRNO : SECCOMP_RET_ALLOW) << "nr " << c.nr;
    int kernel = UnderFilter({}, [&] { return ErrnoOf(c.call()); });
    if (expected != 0) {
      EXPECT_EQ(kernel, expected) << "nr " << c.nr << " a0 " << c.a0;
    } else {
      EXPECT_NE(kernel, 100) << "nr " << c.nr;  // it ran (whatever the kernel said)
    }
  }
  // Foreign architectures and x32 numbers: kill.
  EXPECT_EQ(EvaluateSeccompProgram(prog->instructions, Data(20, 0, AUDIT_ARCH_I386)),
            SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(EvaluateSeccompProgram(prog->instructions, Data(0x40000000 | SYS_getpid)),
            SECCOMP_RET_KILL_PROCESS);
  // Malformed programs are refused, never allowed.
  EXPECT_EQ(EvaluateSeccompProgram({}, Data(SYS_getpid)), SECCOMP_RET_KILL_PROCESS);
  std::vector<sock_filter> out_of_range = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64),
                                           BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  EXPECT_EQ(EvaluateSeccompProgram(out_of_range, Data(SYS_getpid)), SECCOMP_RET_KILL_PROCESS);
  std::vector<sock_filter> jump_out = {BPF_JUMP(BPF_JMP | BPF_JA, 5, 0, 0),
                                       BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  EXPECT_EQ(EvaluateSeccompProgram(jump_out, Data(SYS_getpid)), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompFilter, DeniesDangerousCallsWithEperm) {
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_keyctl, 0, -3, 0)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_bpf, 0, nullptr, 0)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_userfaultfd, 0)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_open_by_handle_at, -1, nullptr, 0)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(::unshare(CLONE_NEWUSER)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_clone3, nullptr, 0)); }), ENOSYS);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_personality, ADDR_NO_RANDOMIZE)); }), EPERM);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_personality, 0x80000001ul)); }), EPERM);
}

TEST(SeccompFilter, AllowsOrdinaryCalls) {
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(::getpid()); }), 0);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(syscall(SYS_personality, 0xffffffffUL)); }), 0);
  EXPECT_EQ(UnderFilter({}, [] { return ErrnoOf(::unshare(0)); }), 0);
  // With the feature, user namespaces are the kernel's decision again.
  EXPECT_NE(UnderFilter({.nested_userns = true}, [] { return ErrnoOf(syscall(SYS_clone3, nullptr, 0)); }),
            ENOSYS);
}

// A forked child under the kNotify program: it hands its listener to us over
// a socketpair, then runs `body` (its exit status is body's result).
struct NotifiedChild {
  pid_t pid = -1;
  UniqueFd listener;
};

template <class F>
NotifiedChild ForkUnderNotify(const SeccompProgram& prog, F body) {
  NotifiedChild child;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return child;
  child.pid = ::fork();
  if (child.pid == 0) {
    ::close(sv[0]);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    int listener = ApplySeccompProgram(prog);
    char byte = 0;
    if (listener < 0 || SendWithFd(sv[1], &byte, 1, listener) != 1) _exit(101);
    ::close(listener);
    _exit(body());
  }
  ::close(sv[1]);
  char byte;
  int fd = -1;
  if (child.pid > 0 && RecvWithFd(sv[0], &byte, 1, &fd) == 1) child.listener.reset(fd);
  ::close(sv[0]);
  return child;
}

// kNotify without root: the child makes denied calls; the monitor reports
// and answers each with the table's errno.
TEST(SeccompMonitor, ReportsAndAnswersWithTheTablesErrno) {
  auto prog = CachedSeccompFilter({.mode = SeccompMode::kNotify});
  ASSERT_TRUE(prog) << prog.error().ToString();
  NotifiedChild child = ForkUnderNotify(**prog, [] {
    int e1 = ErrnoOf(syscall(SYS_bpf, 0, nullptr, 0));
    int e2 = ErrnoOf(syscall(SYS_io_setup, 1, nullptr));
    int e3 = ErrnoOf(syscall(SYS_personality, ADDR_NO_RANDOMIZE));
    return e1 == EPERM && e2 == ENOSYS && e3 == EPERM ? 0 : 103;
  });
  ASSERT_TRUE(child.listener);
  std::mutex mu;
  std::vector<SeccompViolation> seen;
  auto responder = SeccompResponderThread::Start(SeccompMonitor(std::move(child.listener), *prog),
                                                 [&](const SeccompViolation& v) {
                                                   std::lock_guard<std::mutex> lock(mu);
                                                   seen.push_back(v);
                                                 });
  ASSERT_TRUE(responder) << responder.error().ToString();
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  (*responder)->Stop();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].syscall_name, "bpf");
  EXPECT_EQ(seen[0].errno_answered, EPERM);
  EXPECT_EQ(seen[0].pid, child.pid);
  EXPECT_EQ(seen[1].syscall_name, "io_setup");
  EXPECT_EQ(seen[1].errno_answered, ENOSYS);
  EXPECT_EQ(seen[2].syscall_name, "personality");
  EXPECT_EQ(seen[2].errno_answered, EPERM);
}

// A caller that dies while its call is being decided is tolerated: the
// violation is still reported, marked target_gone.
TEST(SeccompMonitor, ToleratesACallerThatDied) {
  auto prog = CachedSeccompFilter({.mode = SeccompMode::kNotify});
  ASSERT_TRUE(prog);
  // The call waits for an answer that never comes.
  NotifiedChild child = ForkUnderNotify(**prog, [] { return ErrnoOf(syscall(SYS_bpf, 0, nullptr, 0)); });
  ASSERT_TRUE(child.listener);
  SeccompMonitor monitor(std::move(child.listener), *prog);
  auto v = monitor.HandleOne([&](const SeccompViolation&) {
    ::kill(child.pid, SIGKILL);
    ::waitpid(child.pid, nullptr, 0);
  });
  ASSERT_TRUE(v) << v.error().ToString();
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ((*v)->syscall_name, "bpf");
  EXPECT_TRUE((*v)->target_gone);
}

TEST(Cgroups, InstanceTagIsStableAndDistinct) {
  EXPECT_EQ(InstanceTag("/run/tessera"), InstanceTag("/run/tessera"));
  EXPECT_NE(InstanceTag("/run/tessera"), InstanceTag("/tmp/x/run"));
  EXPECT_EQ(InstanceTag("/run/tessera").size(), 12u);
}

}  // namespace
}  // namespace tessera::cell
