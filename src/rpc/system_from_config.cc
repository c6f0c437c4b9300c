#include "rpc/system_from_config.h"

namespace tessera::rpc {

policy::SystemInfo SystemFromConfig(const config::System& system,
                                    const std::function<bool(std::string_view)>& is_running) {
  policy::SystemInfo out;
  policy::QubeInfo dom0 = policy::Dom0Info();
  dom0.default_dispvm = system.default_dispvm;
  out.Add(std::move(dom0));
  for (const config::Qube& q : system.qubes) {
    policy::QubeInfo info;
    info.name = q.name;
    info.type = std::string(config::QubesTypeName(q.klass));
    info.uuid = q.uuid;
    info.tags = q.tags;
    info.template_for_dispvms = q.klass == config::QubeClass::kDisposableTemplate;
    // The loader already filled in the system-wide default; nullopt means "none".
    info.default_dispvm = q.default_dispvm;
    info.running = is_running ? is_running(q.name) : false;
    out.Add(std::move(info));
  }
  return out;
}

void AddDisposable(policy::SystemInfo& info, const config::System& system, const std::string& name,
                   const std::string& dvm_template, bool preloaded) {
  policy::QubeInfo q;
  q.name = name;
  q.type = "DispVM";
  q.running = true;
  q.internal = preloaded;
  if (const config::Qube* base = system.Find(dvm_template); base != nullptr) {
    q.tags = base->tags;
    q.default_dispvm = base->default_dispvm;
  }
  info.Add(std::move(q));
}

}  // namespace tessera::rpc
