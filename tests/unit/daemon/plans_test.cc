// The daemon's pure decisions: recovery after a crash, the apply plan, the
// token bucket that bounds what peers can make it do.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/apply_plan.h"
#include "daemon/rate_limit.h"
#include "daemon/recovery.h"

namespace tessera::daemon {
namespace {

QubeRecord Rec(QubeState state, DisposableOwner owner = DisposableOwner::kNone) {
  QubeRecord r;
  r.state = state;
  r.disposable = owner;
  return r;
}

std::map<std::string, RecoveryAction> Actions(const std::vector<RecoveryStep>& steps) {
  std::map<std::string, RecoveryAction> out;
  for (const auto& s : steps) out[s.qube] = s.action;
  return out;
}

TEST(RecoveryPlan, EachKindOfQubeGetsItsAction) {
  RecoveryInput in;
  in.configured = {"work", "vault", "net", "mail", "gone-halted"};
  in.saved.qubes = {
      {"work", Rec(QubeState::kRunning)},
      {"vault", Rec(QubeState::kStarting)},
      {"net", Rec(QubeState::kStopping)},
      {"mail", Rec(QubeState::kFailed)},
      {"old", Rec(QubeState::kRunning)},  // removed from the description
      {"disp1", Rec(QubeState::kRunning, DisposableOwner::kRun)},
      {"disp2", Rec(QubeState::kRunning, DisposableOwner::kStart)},
      {"disp3", Rec(QubeState::kStarting, DisposableOwner::kStart)},
      {"disp4", Rec(QubeState::kRunning, DisposableOwner::kPreload)},
  };
  in.leftovers = {"work", "stray", "disp9"};
  in.storage = {"work", "vault", "disp1", "disp7"};
  auto actions = Actions(PlanRecovery(in));
  EXPECT_EQ(actions["work"], RecoveryAction::kAdopt);
  EXPECT_EQ(actions["vault"], RecoveryAction::kCleanup);
  EXPECT_EQ(actions["net"], RecoveryAction::kCleanup);
  EXPECT_EQ(actions["mail"], RecoveryAction::kCleanupFailed);
  EXPECT_EQ(actions["old"], RecoveryAction::kForget);
  EXPECT_EQ(actions["disp1"], RecoveryAction::kDestroy);  // served one command
  EXPECT_EQ(actions["disp2"], RecoveryAction::kAdopt);    // started explicitly, still running
  EXPECT_EQ(actions["disp3"], RecoveryAction::kDestroy);  // half made
  EXPECT_EQ(actions["disp4"], RecoveryAction::kDestroy);  // preloaded: made again
  EXPECT_EQ(actions["stray"], RecoveryAction::kCleanup);  // runtime state nobody recorded
  EXPECT_EQ(actions["disp9"], RecoveryAction::kDestroy);
  EXPECT_EQ(actions["disp7"], RecoveryAction::kDestroy);  // storage nobody owns
  // A configured qube's private volume is never destroyed, whatever is found.
  EXPECT_EQ(actions.count("gone-halted"), 0u);
  for (const auto& [qube, action] : actions) {
    if (in.configured.count(qube)) {
      EXPECT_NE(action, RecoveryAction::kDestroy) << qube;
    }
  }
}

TEST(RecoveryPlan, NothingToDoForAHaltedSystem) {
  RecoveryInput in;
  in.configured = {"work"};
  in.saved.qubes = {{"work", Rec(QubeState::kHalted)}};
  in.storage = {"work"};
  EXPECT_TRUE(PlanRecovery(in).empty());
}

TEST(RecoveryPlan, OnlyDispNumbersAreDisposableNames) {
  EXPECT_TRUE(IsDisposableName("disp1"));
  EXPECT_TRUE(IsDisposableName("disp0042"));
  EXPECT_FALSE(IsDisposableName("disp"));
  EXPECT_FALSE(IsDisposableName("display"));
  EXPECT_FALSE(IsDisposableName("work"));
}

config::Qube Q(const std::string& name, bool autostart = false) {
  config::Qube q;
  q.name = name;
  q.autostart = autostart;
  return q;
}

TEST(ApplyPlan, StopsThenRestartsThenStartsAutostart) {
  SystemDiff diff;
  diff.qubes = {{"gone", ChangeKind::kRemoved, {}, false},
                {"gone-halted", ChangeKind::kRemoved, {}, false},
                {"mem", ChangeKind::kChanged, {}, true},
                {"label", ChangeKind::kChanged, {}, false},
                {"new", ChangeKind::kAdded, {}, false},
                {"new-manual", ChangeKind::kAdded, {}, false},
                {"halted-auto", ChangeKind::kChanged, {}, true}};
  config::System next;
  next.qubes = {Q("halted-auto", true), Q("label"), Q("mem"), Q("new", true), Q("new-manual")};
  std::map<std::string, QubeState> states = {{"gone", QubeState::kRunning},
                                             {"gone-halted", QubeState::kHalted},
                                             {"mem", QubeState::kRunning},
                                             {"label", QubeState::kRunning},
                                             {"halted-auto", QubeState::kHalted}};
  auto plan = PlanApply(diff, states, next);
  std::vector<ApplyStep> expected = {{ApplyAction::kStop, "gone"},
                                     {ApplyAction::kRestart, "mem"},
                                     {ApplyAction::kStart, "new"},
                                     {ApplyAction::kStart, "halted-auto"}};
  EXPECT_EQ(plan, expected);
  EXPECT_EQ(PlanToJson(plan)[1]["action"], "restart");
}

TEST(ApplyPlan, TheRestartPolicyDecidesWhichRunningQubesRestart) {
  SystemDiff diff;
  diff.qubes = {{"busy", ChangeKind::kChanged, {}, true},
                {"idle", ChangeKind::kChanged, {}, true},
                {"label", ChangeKind::kChanged, {}, false}};
  config::System next;
  next.qubes = {Q("busy"), Q("idle"), Q("label")};
  std::map<std::string, QubeState> states = {
      {"busy", QubeState::kRunning}, {"idle", QubeState::kRunning}, {"label", QubeState::kRunning}};
  std::set<std::string> busy = {"busy"};
  using A = ApplyAction;
  EXPECT_EQ(PlanApply(diff, states, next, RestartOnChange::kAlways, busy),
            (std::vector<ApplyStep>{{A::kRestart, "busy"}, {A::kRestart, "idle"}}));
  EXPECT_EQ(PlanApply(diff, states, next, RestartOnChange::kIfIdle, busy),
            (std::vector<ApplyStep>{{A::kPending, "busy"}, {A::kRestart, "idle"}}));
  EXPECT_EQ(PlanApply(diff, states, next, RestartOnChange::kNever, busy),
            (std::vector<ApplyStep>{{A::kPending, "busy"}, {A::kPending, "idle"}}));
  EXPECT_EQ(PlanToJson(PlanApply(diff, states, next, RestartOnChange::kNever))[0]["action"],
            "restart pending");
  for (auto p : {RestartOnChange::kNever, RestartOnChange::kIfIdle, RestartOnChange::kAlways}) {
    EXPECT_EQ(*ParseRestartOnChange(ToString(p)), p);
  }
  EXPECT_FALSE(ParseRestartOnChange("sometimes"));
  EXPECT_FALSE(ParseRestartOnChange(""));
}

TEST(ApplyPlan, DisposablesThatGoStopFirst) {
  SystemDiff diff;
  diff.qubes = {{"gone", ChangeKind::kRemoved, {}, false}};
  DisposableChange d;
  d.dvm_template = "dvm";
  d.replaced = {"disp1"};
  d.stopped = {"disp2"};
  d.in_use_stopped = {"disp3"};
  d.in_use_kept = {"disp4"};
  diff.disposables = {d};
  config::System next;
  auto plan = PlanApply(diff, {{"gone", QubeState::kRunning}}, next);
  std::vector<ApplyStep> expected = {{ApplyAction::kStop, "disp1"},
                                     {ApplyAction::kStop, "disp2"},
                                     {ApplyAction::kStop, "disp3"},
                                     {ApplyAction::kStop, "gone"}};
  EXPECT_EQ(plan, expected) << "disp4 keeps running its command";
}

TEST(TokenBucket, BurstThenRate) {
  auto t0 = TokenBucket::Clock::now();
  TokenBucket b(10, 3);  // 10/s, bursts of 3
  EXPECT_TRUE(b.Take(1, t0));
  EXPECT_TRUE(b.Take(1, t0));
  EXPECT_TRUE(b.Take(1, t0));
  EXPECT_FALSE(b.Take(1, t0));
  EXPECT_GT(b.WaitFor(1, t0).count(), 0);
  EXPECT_TRUE(b.Take(1, t0 + std::chrono::milliseconds(110)));
  EXPECT_FALSE(b.Take(1, t0 + std::chrono::milliseconds(110)));
  // Never more than the burst, however long it waited.
  auto later = t0 + std::chrono::seconds(60);
  int taken = 0;
  while (b.Take(1, later)) ++taken;
  EXPECT_EQ(taken, 3);
}

}  // namespace
}  // namespace tessera::daemon
