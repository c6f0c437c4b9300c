#include "net/firewall_cache.h"

namespace tessera::net {

Result<std::vector<std::string>> FirewallCache::Compile(const std::string& key,
                                                        const FirewallInput& input) {
  if (auto it = entries_.find(key); it != entries_.end()) {
    const Entry& e = it->second;
    bool same_expired = input.now >= e.input.now && (!e.valid_until || input.now < *e.valid_until);
    if (same_expired && e.input.rules == input.rules && e.input.hosts == input.hosts) {
      return e.compiled;
    }
    entries_.erase(it);
  }
  std::vector<std::string> compiled = TRY(CompileFirewall(input));
  entries_[key] = Entry{input, NextExpiry(input.rules, input.now), compiled};
  return compiled;
}

}  // namespace tessera::net
