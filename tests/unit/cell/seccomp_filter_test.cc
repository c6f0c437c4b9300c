// The seccomp filter compiles, and applied to a forked child it denies what it
// should and nothing ordinary (the real-cell checks are in the integration
// tests; this one runs without root).

#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cell/cgroups.h"
#include "cell/seccomp_filter.h"

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
  EXPECT_GT(prog->instructions.size(), 20u);
  EXPECT_LT(prog->instructions.size(), 4096u);  // BPF_MAXINSNS
  auto nested = BuildSeccompFilter({.nested_userns = true});
  ASSERT_TRUE(nested);
  EXPECT_LT(nested->instructions.size(), prog->instructions.size());
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

TEST(Cgroups, InstanceTagIsStableAndDistinct) {
  EXPECT_EQ(InstanceTag("/run/tessera"), InstanceTag("/run/tessera"));
  EXPECT_NE(InstanceTag("/run/tessera"), InstanceTag("/tmp/x/run"));
  EXPECT_EQ(InstanceTag("/run/tessera").size(), 12u);
}

}  // namespace
}  // namespace tessera::cell
