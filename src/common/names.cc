#include "common/names.h"

#include <cerrno>
#include <string>

#include "common/text.h"

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
    // A rejected name may carry anything, terminal escapes included.
    message += EscapeControl(name.substr(0, 64), EscapeNewlines::kEscape);
    if (name.size() > 64) message += "...";
    message += "' ";
  }
  message += why;
  return Err(Error(std::move(message), EINVAL));
}

bool IsUserSpec(std::string_view user) {
  auto number = [](std::string_view n) {
    if (n.empty() || n.size() > 5) return false;
    unsigned v = 0;
    for (char c : n) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    return v <= 65535;
  };
  size_t colon = user.find(':');
  if (number(user.substr(0, colon))) {
    return colon == std::string_view::npos || number(user.substr(colon + 1));
  }
  if (user.empty() || user.size() > 32) return false;
  for (size_t i = 0; i < user.size(); ++i) {
    char c = user[i];
    bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && ((c >= '0' && c <= '9') || c == '-'));
    if (!ok) return false;
  }
  return true;
}

bool IsStorePath(std::string_view path) {
  constexpr size_t kHashLength = 32;
  constexpr size_t kMaxStoreName = 211;
  std::string_view prefix = kNixStoreDir;
  if (path.substr(0, prefix.size()) != prefix || path.size() <= prefix.size() ||
      path[prefix.size()] != '/') {
    return false;
  }
  std::string_view base = path.substr(prefix.size() + 1);
  if (base.size() < kHashLength + 2 || base[kHashLength] != '-') return false;
  for (char c : base.substr(0, kHashLength)) {
    bool digit = c >= '0' && c <= '9';
    bool letter = c >= 'a' && c <= 'z' && c != 'e' && c != 'o' && c != 'u' && c != 't';
    if (!digit && !letter) return false;
  }
  std::string_view name = base.substr(kHashLength + 1);
  if (name.size() > kMaxStoreName || name[0] == '.') return false;
  for (char c : name) {
    bool ok = IsAsciiAlpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' ||
              c == '_' || c == '?' || c == '=';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tessera
