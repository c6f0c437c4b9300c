#pragma once
// Reads a qube's `credentials` table (name -> absolute host path; copied into
// the qube at each start, docs/CONFIG.md "Credentials"), reporting each bad
// entry by path; part of the schema's first pass (schema.cc).
//
//   CredentialsReader(source, diagnostics).Read(value, "qubes.work.credentials", qube.credentials);

#include <map>
#include <string>
#include <vector>

#include "config/node_reader.h"

namespace tessera::config {

class CredentialsReader : public NodeReader {
 public:
  CredentialsReader(const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : NodeReader(source, diagnostics) {}
  // Adds each valid entry of the table `value` to `credentials`.
  void Read(const Node& value, const std::string& path,
            std::map<std::string, std::string>& credentials);
};

}  // namespace tessera::config
