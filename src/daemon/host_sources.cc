#include "daemon/host_sources.h"

namespace tessera::daemon {

bool IsHostPathSource(std::string_view source) {
  return source == "host" || source.rfind("dir:", 0) == 0;
}

std::vector<HostSource> NewHostSources(const config::System& current, const config::System& next) {
  std::vector<HostSource> out;
  for (const config::Qube& q : next.qubes) {
    if (!IsHostPathSource(q.template_source)) continue;
    const config::Qube* before = current.Find(q.name);
    if (before != nullptr && before->template_source == q.template_source) continue;
    out.push_back({q.name, q.template_source});
  }
  if (next.policy_dir != current.policy_dir) out.push_back({"", "policy_dir:" + next.policy_dir});
  return out;
}

}  // namespace tessera::daemon
