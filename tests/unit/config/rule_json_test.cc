// Firewall rules as JSON (config/rule_json.h): what `tessera firewall add`
// sends and the daemon keeps, checked as a description's rules are.

#include "config/rule_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(RuleJson, RoundTripsAndNormalises) {
  json in = {{"action", "accept"}, {"dsthost", "Example.COM"}, {"proto", "tcp"},
             {"dstports", "443"},  {"expire", 2000000000},     {"comment", "web"}};
  auto rule = FirewallRuleFromJson(in);
  ASSERT_TRUE(rule) << rule.error().ToString();
  EXPECT_EQ(rule->dsthost, "example.com");
  json out = FirewallRuleToJson(*rule);
  EXPECT_EQ(out["dstports"], "443");
  EXPECT_EQ(*FirewallRuleFromJson(out), *rule);
}

TEST(RuleJson, BadRulesNameTheField) {
  EXPECT_THAT(
      FirewallRuleFromJson({{"action", "accept"}, {"dsthost", "10.0.0.1/8"}}).error().message(),
      HasSubstr("dsthost: "));
  EXPECT_THAT(FirewallRuleFromJson({{"dsthost", "10.0.0.0/8"}}).error().message(),
              HasSubstr("missing action"));
  EXPECT_THAT(FirewallRuleFromJson({{"action", "accept"}, {"port", 1}}).error().message(),
              HasSubstr("unknown key 'port'"));
  EXPECT_FALSE(FirewallRuleFromJson(json::array()));
  EXPECT_FALSE(FirewallRuleFromJson({{"action", "accept"}, {"icmptype", 8}}))
      << "icmptype needs proto icmp";
}

}  // namespace
}  // namespace tessera::config
