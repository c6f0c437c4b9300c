// The broker's pure parts: a call checked with the policy grammar before
// anything else, and the decision it acts on.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/loader.h"
#include "policy/loader.h"
#include "rpc/call_request.h"
#include "rpc/decision.h"
#include "rpc/system_from_config.h"

namespace tessera::rpc {
namespace {

using ::testing::HasSubstr;

TEST(ValidateCall, SplitsServiceAndArgumentAndKeepsTheSourceGiven) {
  auto r = ValidateCall("@dispvm", "qubes.OpenInVM+x.pdf", "work");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->service, "qubes.OpenInVM");
  EXPECT_EQ(r->argument, "+x.pdf");
  EXPECT_EQ(r->target, "@dispvm");
  EXPECT_EQ(r->source, "work");
  r = ValidateCall("", "test.X", "dom0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->argument, "+");
  EXPECT_EQ(r->target, "");
  for (const char* target : {"work", "@default", "@dispvm:dvm", "@adminvm", "dom0", "uuid:abc"}) {
    EXPECT_TRUE(ValidateCall(target, "a", "w")) << target;
  }
}

TEST(ValidateCall, RefusesWhatNoServiceOrTargetCanBe) {
  for (const char* service :
       {"", "*", "a/b", "a+b/c", "a b", "a+..", "a+.", "+x", "a\n", "a\xc3\xa9"}) {
    EXPECT_FALSE(ValidateCall("work", service, "w")) << service;
  }
  EXPECT_FALSE(ValidateCall("work", std::string(65, 'a'), "w"));
  EXPECT_FALSE(ValidateCall("work", "a+" + std::string(256, 'b'), "w"));
  EXPECT_TRUE(ValidateCall("work", "a+" + std::string(255, 'b'), "w"));
  for (const char* target : {"@anyvm", "@tag:x", "*", "@type:AppVM", "a b", "x\n"}) {
    EXPECT_FALSE(ValidateCall(target, "a", "w")) << target;
  }
  EXPECT_FALSE(ValidateCall(std::string(200, 'a'), "a", "w"));
  auto bad = ValidateCall("work", "a/b", "w");
  EXPECT_THAT(bad.error().message(), HasSubstr("'/'"));
}

config::System Load(std::string_view toml) {
  config::LoadOutcome outcome = config::LoadSystemFromString(toml, config::Format::kToml, "test");
  EXPECT_TRUE(outcome.system.has_value());
  return outcome.system ? std::move(*outcome.system) : config::System{};
}

constexpr std::string_view kSystem = R"(
default_dispvm = "dvm"
[qubes.base]
class = "template"
[qubes.dvm]
class = "disposable-template"
template = "base"
tags = ["dvm-tag"]
[qubes.work]
class = "app"
template = "base"
)";

TEST(Decide, AllowDenyAskAndWhatCannotBeExecuted) {
  auto policy = policy::Policy::LoadMemory({{"__main__",
                                             "a * @anyvm work allow\n"
                                             "b * @anyvm @anyvm allow\n"
                                             "c * @anyvm work ask\n"
                                             "d * @anyvm @dispvm allow\n"}});
  ASSERT_TRUE(policy);
  config::System system = Load(kSystem);
  policy::SystemInfo info = SystemFromConfig(system);
  auto decide = [&](const char* source, const char* target, const char* service) {
    return Decide(*policy, *ValidateCall(target, service, source), info);
  };
  EXPECT_EQ(decide("dvm", "work", "a").decision, policy::Decision::kAllow);
  EXPECT_EQ(decide("dvm", "work", "a").target, "work");
  EXPECT_EQ(decide("dvm", "dvm", "a").decision, policy::Decision::kDeny);
  EXPECT_EQ(decide("dvm", "work", "c").decision, policy::Decision::kAsk);
  EXPECT_EQ(decide("work", "@dispvm", "d").target, "@dispvm:dvm");
  // Allowed by the rule, but a call to itself cannot be executed.
  policy::Resolution self = decide("work", "work", "b");
  EXPECT_EQ(self.decision, policy::Decision::kDeny);
  EXPECT_THAT(policy->Reason(self), Not(::testing::IsEmpty()));
  EXPECT_EQ(decide("work", "nosuch", "b").decision, policy::Decision::kDeny);
}

TEST(AddDisposable, ARunningDispVmWithItsTemplatesFacts) {
  config::System system = Load(kSystem);
  policy::SystemInfo info = SystemFromConfig(system);
  AddDisposable(info, system, "disp7", "dvm", false);
  AddDisposable(info, system, "disp8", "dvm", true);
  const policy::QubeInfo* d = info.Find("disp7");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->type, "DispVM");
  EXPECT_TRUE(d->running);
  EXPECT_FALSE(d->internal);
  EXPECT_EQ(d->tags, std::vector<std::string>{"dvm-tag"});
  EXPECT_TRUE(info.Find("disp8")->internal) << "preloaded: never offered in an ask";
}

}  // namespace
}  // namespace tessera::rpc

namespace tessera::rpc {
namespace {

// The policy installed by default says what docs/RPC.md says it does.
TEST(DefaultPolicy, AsksForCopiesAndOpensDeniesTheRestAndTrustsDom0) {
  policy::PolicyDirs dirs;
  dirs.policy_dir = std::string(TESSERA_SOURCE_DIR) + "/policy.d";
  dirs.runtime_dir = "/nonexistent/policy.d";
  dirs.compat_dir = "/nonexistent/policy";
  auto policy = policy::LoadPolicyDirs(dirs);
  ASSERT_TRUE(policy);
  config::System system = Load(kSystem);
  policy::SystemInfo info = SystemFromConfig(system);
  auto decide = [&](const char* source, const char* target, const char* service) {
    return Decide(*policy, *ValidateCall(target, service, source), info).decision;
  };
  using policy::Decision;
  EXPECT_EQ(decide("work", "dvm", "qubes.Filecopy"), Decision::kAsk);
  EXPECT_EQ(decide("work", "@dispvm", "qubes.OpenInVM"), Decision::kAsk);
  EXPECT_EQ(decide("work", "dvm", "qubes.ClipboardPaste"), Decision::kAsk);
  EXPECT_EQ(decide("work", "dom0", "qubes.ClipboardPaste"), Decision::kDeny);
  EXPECT_EQ(decide("work", "dvm", "test.Anything"), Decision::kDeny);
  EXPECT_EQ(decide("work", "@dispvm", "test.Anything"), Decision::kDeny);
  EXPECT_EQ(decide("work", "@adminvm", "test.Anything"), Decision::kDeny);
  EXPECT_EQ(decide("work", "@adminvm", "qubes.GetDate"), Decision::kAllow);
  EXPECT_EQ(decide("dom0", "work", "test.Anything"), Decision::kAllow);
  EXPECT_EQ(decide("dom0", "@dispvm", "test.Anything"), Decision::kAllow);
}

}  // namespace
}  // namespace tessera::rpc
