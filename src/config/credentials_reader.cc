#include "config/credentials_reader.h"

#include <string_view>

namespace tessera::config {
namespace {

constexpr size_t kMaxCredentials = 64;
constexpr size_t kMaxCredentialName = 64;

// A file name of /run/credentials: [A-Za-z0-9_.-], not starting with '.'.
bool IsCredentialName(std::string_view name) {
  if (name.empty() || name.size() > kMaxCredentialName || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

void CredentialsReader::Read(const Node& value, const std::string& path,
                             std::map<std::string, std::string>& credentials) {
  if (!ExpectKind(value, Node::Kind::kTable, path, "a table of name = \"/host/path\"")) return;
  for (const Member* member : UniqueMembers(value, path)) {
    const std::string field = JoinPath(path, member->key);
    if (!IsCredentialName(member->key)) {
      Report(member->key_location, field,
             "credential name " + QuoteValue(member->key) +
                 ": expected a file name of letters, digits, '_', '.' and '-' (not starting "
                 "with '.'), at most 64 characters");
      continue;
    }
    if (credentials.size() == kMaxCredentials) {
      Report(member->key_location, field,
             "at most " + std::to_string(kMaxCredentials) + " credentials per qube");
      return;
    }
    auto text = GetString(member->value, field);
    if (!text) continue;
    if (!IsAbsoluteWithoutDotDot(*text)) {
      Report(member->value.location, field,
             "credential " + QuoteValue(*text) +
                 ": expected the absolute path of a host file (its contents are copied at start)");
      continue;
    }
    credentials[member->key] = *text;
  }
}

}  // namespace tessera::config
