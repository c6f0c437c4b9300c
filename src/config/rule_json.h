#pragma once
// One firewall rule as JSON, in the description's own form (what
// `tessera firewall` sends and the daemon keeps for runtime rules), read with
// exactly the checks a rule in a description gets.
//
//   nlohmann::json j = FirewallRuleToJson(rule);   // {"action":"accept","proto":"tcp",...}
//   config::FirewallRule back = TRY(FirewallRuleFromJson(j));

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/model.h"

namespace tessera::config {

nlohmann::json FirewallRuleToJson(const FirewallRule& rule);
// An invalid rule is an error naming the field ("dsthost: invalid ...");
// every problem is listed, one per line.
Result<FirewallRule> FirewallRuleFromJson(const nlohmann::json& rule);

}  // namespace tessera::config
