// Compiled firewalls reused between applies: the same rules, names and
// expired set give the kept compile; any change, an expiry passing or the
// clock going back compiles again; failures are never kept.

#include "net/firewall_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera::net {
namespace {

using config::FirewallAction;
using config::FirewallRule;
using ::testing::ElementsAre;

FirewallRule To(const std::string& dsthost, std::optional<int64_t> expire = std::nullopt,
                FirewallAction action = FirewallAction::kAccept) {
  FirewallRule r;
  r.action = action;
  r.dsthost = dsthost;
  r.expire = expire;
  return r;
}

TEST(FirewallCache, ReusesACompileUntilItsInputChanges) {
  FirewallCache cache;
  FirewallInput in{{To("10.0.0.0/8")}, {}, 1000};
  EXPECT_THAT(*cache.Compile("work/declared", in),
              ElementsAre("ip daddr 10.0.0.0/8 accept", "drop"));
  EXPECT_EQ(cache.size(), 1u);
  in.now = 5000;  // no rule expires: the same compile
  EXPECT_THAT(*cache.Compile("work/declared", in),
              ElementsAre("ip daddr 10.0.0.0/8 accept", "drop"));
  in.rules.push_back(To("192.168.0.0/16", std::nullopt, FirewallAction::kDrop));
  EXPECT_THAT(*cache.Compile("work/declared", in),
              ElementsAre("ip daddr 10.0.0.0/8 accept", "ip daddr 192.168.0.0/16 drop", "drop"));
  // Keys are separate.
  FirewallInput other{{}, {}, 1000};
  EXPECT_THAT(*cache.Compile("work/runtime", other), ElementsAre("accept"));
  EXPECT_EQ(cache.size(), 2u);
  cache.Forget("work/runtime");
  EXPECT_EQ(cache.size(), 1u);
}

TEST(FirewallCache, ARuleExpiringOrTheClockGoingBackCompilesAgain) {
  FirewallCache cache;
  FirewallInput in{
      {To("10.0.0.0/8", 2000), To("192.168.0.0/16", std::nullopt, FirewallAction::kDrop)},
      {},
      1000};
  auto both = ElementsAre("ip daddr 10.0.0.0/8 accept", "ip daddr 192.168.0.0/16 drop", "drop");
  auto later = ElementsAre("ip daddr 192.168.0.0/16 drop", "drop");
  EXPECT_THAT(*cache.Compile("q", in), both);
  in.now = 1999;
  EXPECT_THAT(*cache.Compile("q", in), both);
  in.now = 2000;  // expired at 2000: gone
  EXPECT_THAT(*cache.Compile("q", in), later);
  in.now = 1500;  // the clock set back: the rule is live again
  EXPECT_THAT(*cache.Compile("q", in), both);
}

TEST(FirewallCache, NewlyResolvedNamesCompileAgainAndFailuresAreNotKept) {
  FirewallCache cache;
  FirewallInput in{{To("example.com")}, {}, 1000};
  EXPECT_FALSE(cache.Compile("q", in));  // not resolved: fails closed
  EXPECT_EQ(cache.size(), 0u);
  in.hosts["example.com"] = {"198.51.100.7"};
  EXPECT_THAT(*cache.Compile("q", in), ElementsAre("ip daddr 198.51.100.7 accept", "drop"));
  in.hosts["example.com"] = {"198.51.100.8"};
  EXPECT_THAT(*cache.Compile("q", in), ElementsAre("ip daddr 198.51.100.8 accept", "drop"));
}

}  // namespace
}  // namespace tessera::net
