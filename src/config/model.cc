#include "config/model.h"

#include <algorithm>

namespace tessera::config {

const Qube* System::Find(std::string_view name) const {
  auto it = std::lower_bound(qubes.begin(), qubes.end(), name,
                             [](const Qube& q, std::string_view n) { return q.name < n; });
  if (it == qubes.end() || it->name != name) return nullptr;
  return &*it;
}

std::string_view ToString(QubeClass klass) {
  switch (klass) {
    case QubeClass::kTemplate: return "template";
    case QubeClass::kApp: return "app";
    case QubeClass::kDisposableTemplate: return "disposable-template";
    case QubeClass::kDisposable: return "disposable";
    case QubeClass::kStandalone: return "standalone";
  }
  return "app";
}

std::string_view ToString(Backend backend) {
  return backend == Backend::kCell ? "cell" : "vm";
}

std::string_view ToString(FirewallAction action) {
  return action == FirewallAction::kAccept ? "accept" : "drop";
}

std::string_view ToString(FirewallProto proto) {
  switch (proto) {
    case FirewallProto::kAny: return "any";
    case FirewallProto::kTcp: return "tcp";
    case FirewallProto::kUdp: return "udp";
    case FirewallProto::kIcmp: return "icmp";
  }
  return "any";
}

std::string ToString(const IoMax& io_max) {
  return "read_bps=" + std::to_string(io_max.read_bps) + ",write_bps=" +
         std::to_string(io_max.write_bps) + ",read_iops=" + std::to_string(io_max.read_iops) +
         ",write_iops=" + std::to_string(io_max.write_iops);
}

std::string_view QubesTypeName(QubeClass klass) {
  switch (klass) {
    case QubeClass::kTemplate: return "TemplateVM";
    case QubeClass::kApp: return "AppVM";
    case QubeClass::kDisposableTemplate: return "AppVM";
    case QubeClass::kDisposable: return "DispVM";
    case QubeClass::kStandalone: return "StandaloneVM";
  }
  return "AppVM";
}

std::optional<QubeClass> ParseQubeClass(std::string_view text) {
  for (QubeClass klass : {QubeClass::kTemplate, QubeClass::kApp, QubeClass::kDisposableTemplate,
                          QubeClass::kDisposable, QubeClass::kStandalone}) {
    if (ToString(klass) == text) return klass;
  }
  return std::nullopt;
}

}  // namespace tessera::config
