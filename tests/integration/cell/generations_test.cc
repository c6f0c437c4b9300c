// Template generations with real cells and real overlays (Qubes semantics):
// what a running template qube writes reaches app qubes only at their next
// start after the template qube stopped; a running app qube keeps the
// generation it started with; deletions (whiteouts) and replaced directories
// (opaque) carry over; a template in use is never removed from under a qube.

#include "storage/generations.h"

#include <sys/stat.h>

#include <filesystem>

#include "integration/cell/cell_fixture.h"

namespace tessera::cell::testing {
namespace {

using ::testing::HasSubstr;

class GenerationsCellTest : public CellTest {
 protected:
  CellSpec TemplateQube() {
    CellSpec spec = Spec("base");
    spec.root = RootKind::kTemplate;
    return spec;
  }
  std::string GenDir() const { return layout_.TemplateDir("base") + "/gen"; }
};

TEST_F(GenerationsCellTest, TemplateChangesReachAppQubesAtTheirNextStartOnly) {
  Cell app1 = MustStart(Spec("app1"));
  Cell tpl = MustStart(TemplateQube());
  ASSERT_EQ(Sh(tpl, "echo v2 > /etc/marker && sync && cat /etc/marker").out, "v2\n");
  // Running app qubes never see a running template qube's writes...
  EXPECT_NE(Sh(app1, "cat /etc/marker").code, 0);
  // ...nor do app qubes started while it runs: nothing is committed yet.
  Cell app2 = MustStart(Spec("app2"));
  EXPECT_NE(Sh(app2, "cat /etc/marker").code, 0);
  // The generation itself was never written.
  EXPECT_FALSE(std::filesystem::exists(GenDir() + "/1/etc/marker"));

  ASSERT_TRUE(tpl.Stop());  // commits: generation 2
  EXPECT_EQ(std::filesystem::read_symlink(layout_.TemplateDir("base") + "/root").string(), "gen/2");
  EXPECT_NE(Sh(app1, "cat /etc/marker").code, 0);  // keeps generation 1 for its whole run
  Cell app3 = MustStart(Spec("app3"));
  EXPECT_EQ(Sh(app3, "cat /etc/marker").out, "v2\n");
  // Generation 1 stays while app1 and app2 run on it, and goes after.
  EXPECT_TRUE(std::filesystem::exists(GenDir() + "/1"));
  ASSERT_TRUE(app1.Stop());
  EXPECT_TRUE(std::filesystem::exists(GenDir() + "/1"));
  ASSERT_TRUE(app2.Stop());
  EXPECT_FALSE(std::filesystem::exists(GenDir() + "/1"));
  EXPECT_TRUE(std::filesystem::exists(GenDir() + "/2"));
  ASSERT_TRUE(app3.Stop());
}

TEST_F(GenerationsCellTest, TheTemplateQubeSeesItsOwnChangesAfterARestart) {
  {
    Cell tpl = MustStart(TemplateQube());
    ASSERT_EQ(Sh(tpl, "echo mine > /root/note && chmod 4755 /root/note; echo $?").out, "0\n");
    ASSERT_TRUE(tpl.Stop());
  }
  Cell tpl = MustStart(TemplateQube());
  EXPECT_EQ(Sh(tpl, "cat /root/note && stat -c '%u %a' /root/note").out, "mine\n0 4755\n");
  // Committed as host root (the upper is idmapped), like the rest of the template.
  struct stat st {};
  ASSERT_EQ(::stat((layout_.TemplateRoot("base") + "/root/note").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_TRUE(tpl.Stop());
}

TEST_F(GenerationsCellTest, ACrashedTemplateQubeKeepsItsChangesAndCommitsThemLater) {
  Cell tpl = MustStart(TemplateQube());
  ASSERT_EQ(Sh(tpl, "echo kept > /etc/crash-mark && sync; echo $?").out, "0\n");
  // Killed without a stop (the daemon's recovery or a later start cleans up).
  ASSERT_EQ(::kill(tpl.init_pid(), SIGKILL), 0);
  ASSERT_TRUE(Cell::Cleanup(layout_, "base"));
  Cell app = MustStart(Spec("app"));
  EXPECT_EQ(Sh(app, "cat /etc/crash-mark").out, "kept\n");
  ASSERT_TRUE(app.Stop());
}

TEST_F(GenerationsCellTest, DeletedFilesAndReplacedDirectoriesAreGoneInTheNextGeneration) {
  Cell tpl = MustStart(TemplateQube());
  RunResult r = Sh(tpl,
                   "rm /etc/hosts && rm -r /usr/sbin && rm -r /var && mkdir /var && "
                   "touch /var/only && echo ok");
  ASSERT_EQ(r.out, "ok\n") << r.err;
  ASSERT_TRUE(tpl.Stop());
  Cell app = MustStart(Spec("app"));
  EXPECT_EQ(Sh(app, "test -e /etc/hosts || echo no-hosts").out, "no-hosts\n");
  EXPECT_EQ(Sh(app, "test -e /usr/sbin || echo no-sbin").out, "no-sbin\n");
  EXPECT_EQ(Sh(app, "ls -A /var").out, "only\n");
  EXPECT_EQ(Sh(app, "test -x /usr/bin/env && echo kept").out, "kept\n");
  ASSERT_TRUE(app.Stop());
}

TEST_F(GenerationsCellTest, RemoveIsRefusedWhileAQubeRunsOnTheTemplate) {
  Cell app = MustStart(Spec("app"));
  auto removed = storage::RemoveTemplate(layout_, "base");
  ASSERT_FALSE(removed) << "removed a template a running qube uses";
  EXPECT_EQ(removed.error().errno_value(), EBUSY);
  EXPECT_THAT(removed.error().ToString(), HasSubstr("in use by app (generation 1)"));
  EXPECT_EQ(Sh(app, "ls /bin/busybox").out, "/bin/busybox\n");  // its / is intact
  ASSERT_TRUE(app.Stop());
  ASSERT_TRUE(storage::RemoveTemplate(layout_, "base"));
}

}  // namespace
}  // namespace tessera::cell::testing
