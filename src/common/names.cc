#include "common/names.h"

#include <cerrno>
#include <string>

namespace tessera {
namespace {

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsNameChar(char c) {
  return IsAsciiAlpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

// Why `name` breaks the rule, or nullptr if it does not.
const char* Violation(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > kMaxNameLength) return "is longer than 31 characters";
  if (!IsAsciiAlpha(name[0])) return "must start with a letter";
  for (char c : name) {
    if (!IsNameChar(c)) return "may contain only letters, digits, '_', '.' and '-'";
  }
  return nullptr;
}

}  // namespace

bool IsValidName(std::string_view name) { return Violation(name) == nullptr; }

Status ValidateName(std::string_view name, std::string_view what) {
  const char* why = Violation(name);
  if (why == nullptr) return Ok();
  std::string message(what);
  message += " name ";
  if (!name.empty()) {
    message += "'";
    message += name.size() > 64 ? std::string(name.substr(0, 64)) + "..." : std::string(name);
    message += "' ";
  }
  message += why;
  return Err(Error(std::move(message), EINVAL));
}

}  // namespace tessera
