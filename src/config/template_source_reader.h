#pragma once
// Reads how a template is built: its `source` ("busybox", "debootstrap",
// "host", "dir:/path", "nix") and, for "nix", the `nix` table { root,
// closure, image } (docs/NIXOS.md "Templates from Nix"), reporting each bad
// field by path; part of the schema's first pass (schema.cc), which checks
// that the two go together.
//
//   TemplateSourceReader reader(source, diagnostics);
//   std::optional<std::string> text = reader.ReadSource(value, "qubes.base.source");
//   std::optional<NixTemplate> nix = reader.ReadNix(value, "qubes.base.nix");

#include <optional>
#include <string>
#include <vector>

#include "config/model.h"
#include "config/node_reader.h"

namespace tessera::config {

class TemplateSourceReader : public NodeReader {
 public:
  TemplateSourceReader(const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : NodeReader(source, diagnostics) {}
  // The source text, or nullopt when it was reported.
  std::optional<std::string> ReadSource(const Node& value, const std::string& path);
  // The table, or nullopt when any of it was reported (root and closure are required).
  std::optional<NixTemplate> ReadNix(const Node& value, const std::string& path);
};

}  // namespace tessera::config
