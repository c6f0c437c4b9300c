// The qube manager's state machine against a fake backend (no root, no
// namespaces): netvm order, one launch for concurrent starts, failures,
// instances that exit on their own, disposables, recovery.

#include "daemon/qube_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>

#include "common/fs.h"
#include "config/loader.h"
#include "daemon/apply_run.h"
#include "storage/storage.h"
#include "unit/daemon/loop_support.h"

namespace tessera::daemon {
namespace {

using nlohmann::json;
using testing::RunUntil;
using ::testing::HasSubstr;

class FakeInstance : public backend::Instance {
 public:
  explicit FakeInstance(std::string name) : name_(std::move(name)), exit_(::eventfd(0, EFD_CLOEXEC)) {}
  const std::string& name() const override { return name_; }
  pid_t pid() const override { return 4242; }
  int exit_fd() const override { return exit_.get(); }
  bool Running() const override { return !stopped; }
  Result<UniqueFd> OpenChannel() const override { return Err(Error("fake", ENOTSUP)); }
  Status Stop(std::chrono::milliseconds) override {
    stopped = true;
    return Ok();
  }
  void Exit() {
    uint64_t one = 1;
    (void)!::write(exit_.get(), &one, sizeof(one));
  }
  std::atomic<bool> stopped{false};

 private:
  std::string name_;
  UniqueFd exit_;
};

// Backend and launcher in one: records what it was asked, can be made to
// fail or to hold a launch until released.
class FakeLauncher : public backend::Backend, public backend::Launcher {
 public:
  // backend::Backend
  std::string_view name() const override { return "fake"; }
  backend::Capabilities capabilities() const override { return {}; }
  Result<std::unique_ptr<backend::Instance>> Start(const backend::LaunchSpec& spec,
                                                   const storage::PreparedStorage&) override {
    return Launch({spec, std::nullopt, std::nullopt}, nullptr);
  }
  Result<std::unique_ptr<backend::Instance>> Adopt(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!adoptable.count(name)) return Err(Error("gone", ESRCH));
    auto instance = std::make_unique<FakeInstance>(name);
    instances[name] = instance.get();
    return std::unique_ptr<backend::Instance>(std::move(instance));
  }
  Result<std::vector<std::string>> Leftovers() override {
    std::lock_guard<std::mutex> lock(mu);
    return std::vector<std::string>(leftovers.begin(), leftovers.end());
  }
  Status Cleanup(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu);
    cleaned.push_back(name);
    return Ok();
  }
  // backend::Launcher
  backend::Backend& backend() override { return *this; }
  Result<std::unique_ptr<backend::Instance>> Launch(const backend::LaunchPlan& plan,
                                                    const backend::BuildNotice&) override {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return !hold; });
    launched.push_back(plan.spec.name);
    memory_of[plan.spec.name] = plan.spec.memory_mib;
    if (fail.count(plan.spec.name)) return Err(Error("no room for " + plan.spec.name, ENOSPC));
    auto instance = std::make_unique<FakeInstance>(plan.spec.name);
    instances[plan.spec.name] = instance.get();
    return std::unique_ptr<backend::Instance>(std::move(instance));
  }
  Status Retire(backend::Instance& instance, bool disposable,
                std::chrono::milliseconds grace) override {
    TRY(instance.Stop(grace));
    std::lock_guard<std::mutex> lock(mu);
    retired.push_back(instance.name() + (disposable ? "(destroyed)" : ""));
    return Ok();
  }
  Status CleanupLeftovers(const std::string& name, bool disposable) override {
    std::lock_guard<std::mutex> lock(mu);
    cleaned.push_back(name + (disposable ? "(destroyed)" : ""));
    return Ok();
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    hold = false;
    cv.notify_all();
  }

  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;
  std::set<std::string> fail, adoptable, leftovers;
  std::vector<std::string> launched, retired, cleaned;
  std::map<std::string, uint64_t> memory_of;  // the memory limit each launch was given
  std::map<std::string, FakeInstance*> instances;
};

constexpr const char* kSystem = R"(
default_dispvm = "dvm"
[qubes.base]
class = "template"
[qubes.net]
class = "app"
template = "base"
provides_network = true
[qubes.work]
class = "app"
template = "base"
netvm = "net"
[qubes.vault]
class = "app"
template = "base"
[qubes.dvm]
class = "disposable-template"
template = "base"
)";

class QubeManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tessera-manager-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    tmp_ = dir;
    layout_.state_dir = tmp_ + "/state";
    layout_.runtime_dir = tmp_ + "/run";
    ASSERT_TRUE(MakeDirs(layout_.state_dir + "/daemon", 0700));
    ASSERT_TRUE(WriteFileAtomic(tmp_ + "/system.toml", kSystem));
    loop_ = *EventLoop::Create();
    pool_ = std::make_unique<WorkerPool>(*loop_, 2);
    audit_ = *AuditLog::Open(tmp_ + "/audit", {.journald = false});
    config_ = std::make_unique<ConfigStore>(*ConfigStore::Load(
        {.use_example = false, .config_path = tmp_ + "/system.toml",
         .applied_path = layout_.state_dir + "/daemon/applied.json"}));
    MakeManager();
  }
  void MakeManager() {
    manager_ = std::make_unique<QubeManager>(*loop_, *pool_, fake_, layout_, *config_, *audit_,
                                             events_, layout_.state_dir + "/daemon/state.json",
                                             ManagerOptions{});
  }
  void TearDown() override {
    fake_.Release();
    RunUntil(*loop_, [&] { return manager_->Idle(); });
    manager_.reset();
    pool_.reset();
    loop_.reset();
    (void)storage::RemoveTree(tmp_);
  }

  ApiResult<json> StartAndWait(const std::string& name) {
    std::optional<ApiResult<json>> result;
    manager_->Start(name, [&](ApiResult<json> r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil(*loop_, [&] { return result.has_value(); }));
    return result.value_or(Fail("timeout", "no answer"));
  }
  ApiResult<json> StopAndWait(const std::string& name) {
    std::optional<ApiResult<json>> result;
    manager_->Stop(name, std::chrono::milliseconds(0), [&](ApiResult<json> r) { result = std::move(r); });
    EXPECT_TRUE(RunUntil(*loop_, [&] { return result.has_value(); }));
    return result.value_or(Fail("timeout", "no answer"));
  }
  // Running preloaded disposables of `dvm`, by name.
  std::vector<std::string> Preloaded(const std::string& dvm) {
    std::vector<std::string> out;
    for (const auto& name : manager_->Names()) {
      const QubeRecord* r = manager_->Record(name);
      if (r->disposable == DisposableOwner::kPreload && r->dvm_template == dvm &&
          r->state == QubeState::kRunning) {
        out.push_back(name);
      }
    }
    return out;
  }
  uint64_t MemoryOf(const std::string& name) {
    std::lock_guard<std::mutex> lock(fake_.mu);
    return fake_.memory_of.count(name) ? fake_.memory_of[name] : 0;
  }
  size_t Launches() {
    std::lock_guard<std::mutex> lock(fake_.mu);
    return fake_.launched.size();
  }
  std::string StartDisposableAndWait(DisposableOwner owner) {
    std::optional<ApiResult<std::string>> name;
    manager_->StartDisposable("dvm", owner, [&](ApiResult<std::string> r) { name = r; });
    EXPECT_TRUE(RunUntil(*loop_, [&] { return name.has_value(); }));
    return name && *name ? **name : "";
  }
  ApplyOutcome ApplyAndWait(ApplyProposal proposal) {
    std::optional<ApiResult<ApplyOutcome>> outcome;
    CarryOutApply(*manager_, std::move(proposal), "test", std::chrono::milliseconds(0),
                  [&](ApiResult<ApplyOutcome> o) { outcome = std::move(o); });
    EXPECT_TRUE(RunUntil(*loop_, [&] { return outcome.has_value(); }));
    if (!outcome || !*outcome) return ApplyOutcome{json::array(), false};
    return **outcome;
  }
  QubeState StateOf(const std::string& name) {
    const QubeRecord* r = manager_->Record(name);
    return r == nullptr ? QubeState::kHalted : r->state;
  }

  std::string tmp_;
  storage::Layout layout_;
  FakeLauncher fake_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<ConfigStore> config_;
  EventBus events_;
  std::unique_ptr<QubeManager> manager_;
};

TEST_F(QubeManagerTest, StartRunsTheNetvmFirstAndStopHaltsAndPersists) {
  manager_->Recover();
  auto started = StartAndWait("work");
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_FALSE((*started)["already_running"].get<bool>());
  EXPECT_EQ(fake_.launched, (std::vector<std::string>{"net", "work"}));
  EXPECT_EQ(StateOf("work"), QubeState::kRunning);
  EXPECT_EQ(StateOf("net"), QubeState::kRunning);
  auto saved = LoadState(layout_.state_dir + "/daemon/state.json");
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->qubes["work"].state, QubeState::kRunning);
  EXPECT_TRUE((*StartAndWait("work"))["already_running"].get<bool>());
  ASSERT_TRUE(StopAndWait("work"));
  EXPECT_EQ(StateOf("work"), QubeState::kHalted);
  {
    // The instance itself is gone once stopped: what the launcher saw counts.
    std::lock_guard<std::mutex> lock(fake_.mu);
    EXPECT_EQ(std::count(fake_.retired.begin(), fake_.retired.end(), "work"), 1);
    fake_.instances.erase("work");
  }
  EXPECT_TRUE((*StopAndWait("work"))["already_halted"].get<bool>());
}

TEST_F(QubeManagerTest, ConcurrentStartsShareOneLaunch) {
  manager_->Recover();
  fake_.hold = true;
  int answers = 0;
  for (int i = 0; i < 3; ++i) {
    manager_->Start("vault", [&](ApiResult<json> r) {
      EXPECT_TRUE(r);
      ++answers;
    });
  }
  EXPECT_EQ(StateOf("vault"), QubeState::kStarting);
  fake_.Release();
  ASSERT_TRUE(RunUntil(*loop_, [&] { return answers == 3; }));
  EXPECT_EQ(fake_.launched, (std::vector<std::string>{"vault"}));
}

TEST_F(QubeManagerTest, AFailedStartIsFailedWithItsReasonAndCleanedUp) {
  manager_->Recover();
  fake_.fail = {"vault"};
  auto r = StartAndWait("vault");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("no room for vault"));
  EXPECT_EQ(StateOf("vault"), QubeState::kFailed);
  EXPECT_EQ(manager_->Record("vault")->reason, "no room for vault: No space left on device");
  EXPECT_THAT(fake_.cleaned, ::testing::Contains("vault"));
  fake_.fail.clear();
  EXPECT_TRUE(StartAndWait("vault")) << "a failed qube starts again";
}

TEST_F(QubeManagerTest, AQubeThatExitsOnItsOwnIsFailed) {
  manager_->Recover();
  ASSERT_TRUE(StartAndWait("vault"));
  fake_.instances["vault"]->Exit();
  ASSERT_TRUE(RunUntil(*loop_, [&] { return StateOf("vault") == QubeState::kFailed; }));
  EXPECT_EQ(manager_->Record("vault")->reason, "cell exited unexpectedly");
  EXPECT_THAT(fake_.retired, ::testing::Contains("vault"));
}

TEST_F(QubeManagerTest, DisposablesAreNamedStartedAndForgotten) {
  manager_->Recover();
  std::optional<ApiResult<std::string>> name;
  manager_->StartDisposable("", DisposableOwner::kRun, [&](ApiResult<std::string> r) { name = r; });
  ASSERT_TRUE(RunUntil(*loop_, [&] { return name.has_value(); }));
  ASSERT_TRUE(*name) << name->error().message;
  EXPECT_EQ(**name, "disp1");
  EXPECT_EQ(StateOf("disp1"), QubeState::kRunning);
  ASSERT_TRUE(StopAndWait("disp1"));
  EXPECT_FALSE(manager_->Exists("disp1"));
  EXPECT_THAT(fake_.retired, ::testing::Contains("disp1(destroyed)"));
  std::optional<ApiResult<std::string>> bad;
  manager_->StartDisposable("work", DisposableOwner::kRun, [&](ApiResult<std::string> r) { bad = r; });
  ASSERT_TRUE(bad && !*bad);
  EXPECT_THAT(bad->error().message, HasSubstr("not a disposable template"));
}

TEST_F(QubeManagerTest, RecoveryAdoptsWhatRunsAndCleansTheRest) {
  DaemonState saved;
  saved.qubes["work"].state = QubeState::kRunning;
  saved.qubes["vault"].state = QubeState::kStarting;
  saved.qubes["disp5"].state = QubeState::kRunning;
  saved.qubes["disp5"].disposable = DisposableOwner::kRun;
  ASSERT_TRUE(SaveState(layout_.state_dir + "/daemon/state.json", saved));
  fake_.adoptable = {"work"};
  fake_.leftovers = {"work", "stray"};
  manager_->Recover();
  EXPECT_EQ(StateOf("work"), QubeState::kRunning);
  EXPECT_EQ(StateOf("vault"), QubeState::kHalted);
  EXPECT_FALSE(manager_->Exists("disp5"));
  EXPECT_THAT(fake_.cleaned, ::testing::IsSupersetOf({"vault", "stray", "disp5(destroyed)"}));
  // The adopted qube is watched like a started one.
  fake_.instances["work"]->Exit();
  ASSERT_TRUE(RunUntil(*loop_, [&] { return StateOf("work") == QubeState::kFailed; }));
}

TEST_F(QubeManagerTest, UnknownNamesGetAHint) {
  manager_->Recover();
  auto r = StartAndWait("wrok");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, wire::codes::kNoSuchQube);
  EXPECT_EQ(r.error().message, "no such qube: wrok (did you mean work?)");
}

// kSystem with the disposable template's memory and preload count set.
config::System PreloadSystem(int memory, int preload) {
  std::string text = std::string(kSystem) + "memory = " + std::to_string(memory) + "\n" +
                     "features = { \"preload-dispvm-max\" = \"" + std::to_string(preload) +
                     "\" }\n";
  auto loaded = config::LoadSystemFromString(text, config::Format::kToml, "preload.toml");
  EXPECT_TRUE(loaded.system.has_value());
  return loaded.system.value_or(config::System{});
}

// The issue-10 report: after `apply` changed a disposable template, its
// preloaded disposables kept the old settings and were still handed out.
TEST_F(QubeManagerTest, ApplyReplacesPreloadedDisposablesAndTheNextHasTheNewSettings) {
  manager_->Recover();
  manager_->AdoptSystem(PreloadSystem(400, 2), "v1");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return Preloaded("dvm").size() == 2; }));
  std::vector<std::string> old = Preloaded("dvm");
  EXPECT_EQ(MemoryOf(old[0]), 400u);
  std::string in_use = StartDisposableAndWait(DisposableOwner::kRun);
  ASSERT_FALSE(in_use.empty());

  ApplyProposal proposal = ProposeApply(*manager_, PreloadSystem(600, 2));
  ASSERT_EQ(proposal.diff.disposables.size(), 1u);
  EXPECT_EQ(proposal.diff.disposables[0].replaced, old);
  EXPECT_EQ(proposal.diff.disposables[0].in_use_kept, std::vector<std::string>{in_use});
  std::optional<ApiResult<ApplyOutcome>> outcome;
  CarryOutApply(*manager_, std::move(proposal), "v2", std::chrono::milliseconds(0),
                [&](ApiResult<ApplyOutcome> o) { outcome = std::move(o); });
  // From the first step on, none of the old ones is handed out.
  EXPECT_EQ(manager_->TakePreloaded("dvm"), "");
  // And a second apply waits for this one to be done.
  std::optional<ApiResult<ApplyOutcome>> second;
  CarryOutApply(*manager_, ProposeApply(*manager_, PreloadSystem(800, 2)), "v3",
                std::chrono::milliseconds(0),
                [&](ApiResult<ApplyOutcome> o) { second = std::move(o); });
  ASSERT_TRUE(second.has_value()) << "refused at once";
  ASSERT_FALSE(*second);
  EXPECT_EQ(second->error().code, wire::codes::kBusy);
  ASSERT_TRUE(RunUntil(*loop_, [&] { return outcome.has_value(); }));
  ASSERT_TRUE(*outcome);
  EXPECT_TRUE((*outcome)->ok) << (*outcome)->done.dump();
  for (const auto& name : old) EXPECT_FALSE(manager_->Exists(name)) << name;
  EXPECT_EQ(StateOf(in_use), QubeState::kRunning) << "its command keeps running";

  ASSERT_TRUE(RunUntil(*loop_, [&] { return Preloaded("dvm").size() == 2; }));
  std::string taken = manager_->TakePreloaded("dvm");
  ASSERT_FALSE(taken.empty());
  EXPECT_EQ(std::count(old.begin(), old.end(), taken), 0);
  EXPECT_EQ(MemoryOf(taken), 600u) << "taken after the apply: the new settings";
}

TEST_F(QubeManagerTest, ApplyRemovingADisposableTemplateStopsAllItsDisposables) {
  manager_->Recover();
  manager_->AdoptSystem(PreloadSystem(400, 2), "v1");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return Preloaded("dvm").size() == 2; }));
  std::string in_use = StartDisposableAndWait(DisposableOwner::kStart);
  ASSERT_FALSE(in_use.empty());

  std::string text = kSystem;
  text.erase(text.find("[qubes.dvm]"));
  text.erase(0, text.find("[qubes.base]"));  // and default_dispvm, which named it
  auto next = config::LoadSystemFromString(text, config::Format::kToml, "next.toml");
  ASSERT_TRUE(next.system);
  ApplyProposal proposal = ProposeApply(*manager_, std::move(*next.system));
  ASSERT_EQ(proposal.diff.disposables.size(), 1u);
  EXPECT_EQ(proposal.diff.disposables[0].stopped.size(), 2u);
  EXPECT_EQ(proposal.diff.disposables[0].in_use_stopped, std::vector<std::string>{in_use});
  ApplyOutcome outcome = ApplyAndWait(std::move(proposal));
  EXPECT_TRUE(outcome.ok) << outcome.done.dump();
  size_t launches = Launches();
  RunUntil(
      *loop_, [] { return false; }, std::chrono::milliseconds(200));
  EXPECT_TRUE(manager_->Disposables().empty()) << "no disposable outlives its template";
  EXPECT_EQ(Launches(), launches) << "and the pool makes no new ones";
  EXPECT_EQ(manager_->TakePreloaded("dvm"), "");
}

TEST_F(QubeManagerTest, ApplyLoweringThePreloadCountStopsTheSurplusOnly) {
  manager_->Recover();
  manager_->AdoptSystem(PreloadSystem(400, 2), "v1");
  ASSERT_TRUE(RunUntil(*loop_, [&] { return Preloaded("dvm").size() == 2; }));
  std::vector<std::string> old = Preloaded("dvm");
  ApplyProposal proposal = ProposeApply(*manager_, PreloadSystem(400, 1));
  EXPECT_TRUE(proposal.plan.size() == 1 && proposal.plan[0].qube == old[1]);
  ApplyOutcome outcome = ApplyAndWait(std::move(proposal));
  EXPECT_TRUE(outcome.ok) << outcome.done.dump();
  size_t launches = Launches();
  RunUntil(
      *loop_, [] { return false; }, std::chrono::milliseconds(200));
  EXPECT_EQ(Preloaded("dvm"), std::vector<std::string>{old[0]}) << "the one kept is not remade";
  EXPECT_EQ(Launches(), launches);
}

}  // namespace
}  // namespace tessera::daemon
