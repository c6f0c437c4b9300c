// Launch plans from the system description.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "backend/planner.h"

namespace tessera::backend {
namespace {

using ::testing::HasSubstr;

config::System MakeSystem() {
  config::System s;
  config::Qube base;
  base.name = "base";
  base.klass = config::QubeClass::kTemplate;
  config::Qube work;
  work.name = "work";
  work.klass = config::QubeClass::kApp;
  work.template_name = "base";
  work.memory_mib = 300;
  work.cpus = 2;
  work.features = {{"nested-userns", "1"}, {"pids-max", "99"}};
  config::Qube dvm;
  dvm.name = "dvm";
  dvm.klass = config::QubeClass::kDisposableTemplate;
  dvm.template_name = "base";
  config::Qube solo;
  solo.name = "solo";
  solo.klass = config::QubeClass::kStandalone;
  s.qubes = {base, dvm, solo, work};
  return s;
}

TEST(Planner, MapsClassesLimitsAndFeatures) {
  config::System s = MakeSystem();
  auto plan = PlanLaunch(s, "work");
  ASSERT_TRUE(plan) << plan.error().ToString();
  const LaunchSpec* work = &plan->spec;
  EXPECT_EQ(work->root, RootKind::kOverlay);
  EXPECT_EQ(work->template_name, "base");
  EXPECT_EQ(work->memory_mib, 300u);
  EXPECT_EQ(work->cpus, 2u);
  EXPECT_TRUE(work->nested_userns);
  EXPECT_EQ(work->pids_max, 99u);
  EXPECT_FALSE(work->disposable);
  auto base_plan = PlanLaunch(s, "base");
  ASSERT_TRUE(base_plan);
  const LaunchSpec* base = &base_plan->spec;
  EXPECT_EQ(base->root, RootKind::kTemplate);
  EXPECT_EQ(base->template_name, "base");
  EXPECT_EQ(base->memory_mib, 1024u);  // default when unset
  EXPECT_FALSE(base->nested_userns);
  auto solo_plan = PlanLaunch(s, "solo");
  ASSERT_TRUE(solo_plan);
  const LaunchSpec* solo = &solo_plan->spec;
  EXPECT_EQ(solo->root, RootKind::kStandalone);
}

TEST(Planner, DisposableFromDisposableTemplateOnly) {
  config::System s = MakeSystem();
  auto disp_plan = PlanDisposable(s, "dvm", "disp1234");
  ASSERT_TRUE(disp_plan);
  const LaunchSpec* disp = &disp_plan->spec;
  EXPECT_TRUE(disp->disposable);
  EXPECT_EQ(disp->name, "disp1234");
  EXPECT_EQ(disp->hostname, "disp1234");
  EXPECT_EQ(disp->template_name, "base");
  auto not_dvm = PlanDisposable(s, "work", "disp1");
  ASSERT_FALSE(not_dvm);
  EXPECT_THAT(not_dvm.error().ToString(), HasSubstr("not a disposable template"));
}

TEST(Planner, ErrorsNameTheQubeAndField) {
  config::System s = MakeSystem();
  auto missing = PlanLaunch(s, "nope");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().ToString(), HasSubstr("nope"));
  s.qubes[3].features["pids-max"] = "lots";
  auto bad = PlanLaunch(s, "work");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().ToString(), HasSubstr("qube work: feature pids-max"));
  s.qubes[3].features.erase("pids-max");
  s.qubes[3].backend = config::Backend::kVm;
  EXPECT_FALSE(PlanLaunch(s, "work"));
}

TEST(Planner, PtyMaxFeature) {
  config::System s = MakeSystem();
  EXPECT_EQ(PlanLaunch(s, "work")->spec.pty_max, 64u);
  s.qubes[3].features["pty-max"] = "1024";
  EXPECT_EQ(PlanLaunch(s, "work")->spec.pty_max, 1024u);
  for (const char* bad : {"0", "1025", "many"}) {
    s.qubes[3].features["pty-max"] = bad;
    auto r = PlanLaunch(s, "work");
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().ToString(), HasSubstr("qube work: feature pty-max"));
  }
}

TEST(Planner, RlimitFeatures) {
  config::System s = MakeSystem();
  auto defaults = PlanLaunch(s, "base");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->spec.rlimit_nofile, (Rlimit{1024, 524288}));
  EXPECT_FALSE(defaults->spec.rlimit_nproc);  // = pids_max
  EXPECT_EQ(defaults->spec.rlimit_core, (Rlimit{0, 0}));

  s.qubes[3].features["rlimit-nofile"] = "4096:8192";
  s.qubes[3].features["rlimit-nproc"] = "50";
  s.qubes[3].features["rlimit-core"] = "0:unlimited";
  auto work = PlanLaunch(s, "work");
  ASSERT_TRUE(work) << work.error().ToString();
  EXPECT_EQ(work->spec.rlimit_nofile, (Rlimit{4096, 8192}));
  EXPECT_EQ(work->spec.rlimit_nproc, (Rlimit{50, 50}));
  EXPECT_EQ(work->spec.rlimit_core, (Rlimit{0, kRlimInfinity}));

  for (const char* bad : {"", "x", "10:", ":10", "20:10", "1:2:3", "0", "2000000", "unlimited",
                          "-1", "1.5"}) {
    s.qubes[3].features["rlimit-nofile"] = bad;
    auto r = PlanLaunch(s, "work");
    ASSERT_FALSE(r) << "accepted rlimit-nofile = \"" << bad << "\"";
    EXPECT_THAT(r.error().ToString(), HasSubstr("qube work: feature rlimit-nofile")) << bad;
  }
  s.qubes[3].features["rlimit-nofile"] = "1024";
  s.qubes[3].features["rlimit-nproc"] = "0";
  auto nproc = PlanLaunch(s, "work");
  ASSERT_FALSE(nproc);
  EXPECT_THAT(nproc.error().ToString(), HasSubstr("qube work: feature rlimit-nproc"));
}

}  // namespace
}  // namespace tessera::backend
