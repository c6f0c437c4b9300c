// SystemFromConfig: the policy engine's view of a validated description.

#include "rpc/system_from_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "config/loader.h"
#include "config/values.h"

namespace tessera::rpc {
namespace {

using ::testing::UnorderedElementsAre;

config::System Load(std::string_view toml) {
  config::LoadOutcome outcome = config::LoadSystemFromString(toml, config::Format::kToml, "test");
  EXPECT_TRUE(outcome.system.has_value());
  for (const auto& d : outcome.diagnostics) ADD_FAILURE() << d.ToString();
  return outcome.system ? std::move(*outcome.system) : config::System{};
}

constexpr std::string_view kSystem = R"(
default_dispvm = "dvm"
[qubes.base]
class = "template"
[qubes.dvm]
class = "disposable-template"
template = "base"
[qubes.work]
class = "app"
template = "base"
tags = ["personal", "mail"]
[qubes.vault]
class = "app"
template = "base"
default_dispvm = "none"
)";

TEST(SystemFromConfigTest, EveryQubeWithItsFactsPlusDom0) {
  config::System system = Load(kSystem);
  policy::SystemInfo info = SystemFromConfig(system);
  const policy::QubeInfo* dom0 = info.Find("dom0");
  ASSERT_NE(dom0, nullptr);
  EXPECT_EQ(dom0->type, "AdminVM");
  EXPECT_EQ(dom0->default_dispvm, "dvm");
  EXPECT_TRUE(dom0->running);

  const policy::QubeInfo* work = info.Find("work");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->type, "AppVM");
  EXPECT_THAT(work->tags, UnorderedElementsAre("personal", "mail"));
  EXPECT_EQ(work->uuid, config::DeriveUuid("work"));
  EXPECT_EQ(work->default_dispvm, "dvm");  // the system-wide default
  EXPECT_FALSE(work->running);             // no power states given: Halted
  // Found by uuid as well as by name.
  EXPECT_EQ(info.Find("uuid:" + config::DeriveUuid("work")), work);

  EXPECT_EQ(info.Find("base")->type, "TemplateVM");
  EXPECT_TRUE(info.Find("dvm")->template_for_dispvms);
  EXPECT_FALSE(info.Find("work")->template_for_dispvms);
  EXPECT_EQ(info.Find("vault")->default_dispvm, std::nullopt);
  EXPECT_EQ(info.Find("nosuch"), nullptr);
}

TEST(SystemFromConfigTest, PowerStatesComeFromTheCaller) {
  config::System system = Load(kSystem);
  policy::SystemInfo info =
      SystemFromConfig(system, [](std::string_view qube) { return qube == "work"; });
  EXPECT_TRUE(info.Find("work")->running);
  EXPECT_FALSE(info.Find("vault")->running);
  EXPECT_TRUE(info.Find("dom0")->running);
}

}  // namespace
}  // namespace tessera::rpc
