// Fuzz target for the policy parser and evaluator. The input is the main
// policy file; it is also reachable as "inc" (so !include inc and
// !include-service S * inc recurse into it) and as the legacy file "test.S"
// read by !compat-4.0. Each loaded policy is evaluated for a few requests.
// The same text is also loaded as a policy directory (FilePolicy flavour:
// universal newlines, any include path).

#include <cstddef>
#include <cstdint>
#include <string>

#include "policy/file_system.h"
#include "policy/policy.h"
#include "policy/system.h"

namespace {

const tessera::policy::SystemInfo& System() {
  static const tessera::policy::SystemInfo sys = [] {
    auto s = tessera::policy::SystemInfo::FromJsonText(R"({"qubes": {
      "dom0": {"type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000",
               "default_dispvm": "dvm", "power_state": "Running"},
      "work": {"tags": ["t"], "uuid": "1", "default_dispvm": "dvm", "power_state": "Running"},
      "vault": {"uuid": "2", "internal": true},
      "dvm": {"template_for_dispvms": true, "tags": ["t"], "uuid": "3"},
      "tpl": {"type": "TemplateVM", "uuid": "4", "default_dispvm": "nope"}}})");
    return std::move(*s);
  }();
  return sys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::policy;
  const std::string text(reinterpret_cast<const char*>(data), size);
  {
    MemoryFileSystem fs({{"d/50-x.policy", text}, {"d/inc", text}, {"c/test.S+a", text}});
    LoadSpec spec;
    spec.dirs = {{"d", "", false}};
    spec.compat_dir = "c";
    auto dir_policy = Policy::Load(fs, spec);
    if (dir_policy) (void)dir_policy->Evaluate({"test.S", "+a", "work", "", ""}, System());
  }
  auto policy = Policy::LoadMemory({{"__main__", text}, {"inc", text}}, {{"test.S", text}});
  for (const char* line : {"test.S * @anyvm @anyvm allow", "x"}) (void)ParseRule(line);
  if (!policy) {
    for (const auto& e : policy.error()) (void)e.ToString();
    return 0;
  }
  static const Request kRequests[] = {
      {"test.S", "+", "work", "vault", ""},  {"test.S", "+a", "work", "@dispvm", ""},
      {"qubes.X", "+", "tpl", "", ""},       {"test.S", "+", "work", "@dispvm:dvm", ""},
      {"test.S", "+", "vault", "dom0", ""},  {"test.S", "+", "nosuch", "uuid:3", ""},
      {"test.S", "+", "tpl", "@dispvm", ""},
  };
  for (const auto& req : kRequests) {
    Resolution r = policy->Evaluate(req, System());
    (void)policy->Reason(r);
    if (r.decision == Decision::kAllow) {
      auto n = NormalizeRequest(req, System());
      if (n) (void)DaemonResponse(*n, r.target, r.user, r.autostart, System());
    }
  }
  return 0;
}
