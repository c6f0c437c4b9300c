#pragma once
// Reads a qube's `firewall` list (Qubes' rule fields: action, dsthost, proto,
// dstports, icmptype, specialtarget, expire, comment) from a document node,
// reporting each bad field by path; part of the schema's first pass
// (schema.cc).
//
//   FirewallReader(source, diagnostics).Read(value, "qubes.work.firewall", qube.firewall);

#include <optional>
#include <string>
#include <vector>

#include "config/model.h"
#include "config/node_reader.h"

namespace tessera::config {

class FirewallReader : public NodeReader {
 public:
  FirewallReader(const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : NodeReader(source, diagnostics) {}
  // Appends each valid rule of the array `value` to `rules`.
  void Read(const Node& value, const std::string& path, std::vector<FirewallRule>& rules);

 private:
  // A rule, or nullopt when any of its fields was reported.
  std::optional<FirewallRule> ReadRule(const Node& node, const std::string& path);
};

}  // namespace tessera::config
