// Hardening against a qube that attacks the host's shared resources or its
// own cell's protections (issue 9's attack run): each test tries the attack
// from inside a real cell and asserts it fails.

#include <linux/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(CellTest, CommandsCannotLowerTheirOomScoreBelowZero) {
  Cell cell = MustStart(Spec("oomadj"));
  // The agent's minimum stays 0 (it was shielded through the legacy oom_adj),
  // so a command that inherits it cannot go back to the agent's score.
  EXPECT_EQ(Sh(cell, "cat /proc/self/oom_score_adj").out, "0\n");
  RunResult lower = Sh(cell, "echo -941 > /proc/self/oom_score_adj; echo rc=$?");
  EXPECT_THAT(lower.out, HasSubstr("rc=1")) << lower.err;
  EXPECT_THAT(lower.err, HasSubstr("Permission denied"));
  EXPECT_THAT(Sh(cell, "echo -1 > /proc/self/oom_score_adj; echo rc=$?").out, HasSubstr("rc=1"));
  EXPECT_THAT(Sh(cell, "echo -5 > /proc/self/oom_adj; echo rc=$?").out, HasSubstr("rc=1"));
  EXPECT_EQ(Sh(cell, "cat /proc/self/oom_score_adj").out, "0\n");
  // Raising stays free.
  EXPECT_EQ(Sh(cell, "echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj").out,
            "500\n");
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_RESOURCE) == 1) {
    EXPECT_LT(std::stoi(Sh(cell, "cat /proc/1/oom_score_adj").out), 0);
  } else {
    std::printf("note: no CAP_SYS_RESOURCE on this host: agent oom_score_adj not checked\n");
  }
  ASSERT_TRUE(cell.Stop());
}

}  // namespace
}  // namespace tessera::cell::testing
