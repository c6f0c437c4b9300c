#pragma once
// Compiled firewalls kept between applies (docs/NETWORK.md "Firewall"): a
// netvm's table is rendered again on every change of its clients, and
// compiling a list of 1,000 rules costs about a millisecond each time. A
// compile is reused while its rules and resolved names are the same and no
// rule has expired since (the clock going back compiles again).
//
//   FirewallCache cache;
//   auto body = cache.Compile("work/declared", {rules, hosts, now});  // compiles
//   body = cache.Compile("work/declared", {rules, hosts, now + 1});   // reused
//   cache.Forget("work/declared");

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "net/firewall.h"

namespace tessera::net {

class FirewallCache {
 public:
  // CompileFirewall(input), or what it gave for the same input before.
  // Failures are not kept.
  Result<std::vector<std::string>> Compile(const std::string& key, const FirewallInput& input);
  void Forget(const std::string& key) { entries_.erase(key); }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    FirewallInput input;
    std::optional<int64_t> valid_until;  // the next expiry after input.now
    std::vector<std::string> compiled;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace tessera::net
