#pragma once
// What policy evaluation needs to know about the qubes of a system: type,
// tags, uuid, disposable settings, power state. Built from the system
// description (rpc/system_from_config.h), from a `--system` JSON file, or by
// tests.
//
//   policy::SystemInfo sys;
//   sys.Add({.name = "work", .type = "AppVM", .uuid = "...", .tags = {"personal"}});
//   const policy::QubeInfo* q = sys.Find("uuid:...");  // names and uuid:U both work

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"

namespace tessera::policy {

struct QubeInfo {
  std::string name;
  std::string type = "AppVM";  // AdminVM, AppVM, TemplateVM, StandaloneVM, DispVM, RemoteVM
  std::string uuid;            // without the "uuid:" prefix; may be empty
  std::vector<std::string> tags;
  bool template_for_dispvms = false;
  std::optional<std::string> default_dispvm;
  bool running = false;   // power_state == "Running"
  bool internal = false;  // never offered in an `ask` prompt
  // Qubes Air (RemoteVM) fields: kept so replies match the reference; tessera
  // does not implement relaying.
  std::string relayvm;
  std::string transport_rpc;

  bool HasTag(std::string_view tag) const;
};

class SystemInfo {
 public:
  // Adds or replaces a qube.
  void Add(QubeInfo qube);
  // Looks up a qube by name or by "uuid:UUID".
  const QubeInfo* Find(std::string_view name_or_uuid) const;
  const std::vector<QubeInfo>& qubes() const { return qubes_; }
  // Indices into qubes(), ordered by name (byte order).
  const std::vector<uint32_t>& name_order() const { return name_order_; }

  // Parses {"qubes": {NAME: {"type": .., "tags": [..], "uuid": .., "template_for_dispvms": ..,
  // "default_dispvm": ..|null, "power_state": "Running"|"Halted", "internal": ..}}}
  // ("domains" is accepted as a synonym of "qubes"). When no AdminVM is listed,
  // dom0 is added (tessera always has one).
  static Result<SystemInfo> FromJson(const nlohmann::json& doc);
  static Result<SystemInfo> FromJsonText(std::string_view text);

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>>;
  void Reindex();

  std::vector<QubeInfo> qubes_;
  Index by_name_;
  Index by_uuid_;
  std::vector<uint32_t> name_order_;
};

// The dom0 entry every tessera system has.
QubeInfo Dom0Info();

}  // namespace tessera::policy
