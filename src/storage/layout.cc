// Layout: where each qube's and template's files live, and name validation
// (names become path components, so this is the gate against "../x").

#include <string>

#include "common/paths.h"
#include "storage/storage.h"

namespace tessera::storage {

Layout Layout::FromEnvironment() { return Layout{StateDir(), RuntimeDir()}; }

std::string Layout::TemplateDir(const std::string& name) const {
  return state_dir + "/templates/" + name;
}
std::string Layout::TemplateRoot(const std::string& name) const {
  return TemplateDir(name) + "/root";
}
std::string Layout::QubeDir(const std::string& name) const { return state_dir + "/qubes/" + name; }
std::string Layout::PrivateVolume(const std::string& name) const {
  return QubeDir(name) + "/private";
}
std::string Layout::StandaloneRoot(const std::string& name) const {
  return QubeDir(name) + "/root";
}
std::string Layout::ScratchDir(const std::string& name) const {
  return runtime_dir + "/cells/" + name;
}

bool operator==(const IdRange& a, const IdRange& b) {
  return a.base == b.base && a.count == b.count;
}

Status ValidateName(const std::string& name, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return Err(Error(what + " name \"" + name + "\": " + why, EINVAL));
  };
  if (name.empty()) return bad("empty");
  if (name.size() > 31) return bad("longer than 31 characters");
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(name[0])) return bad("must start with a letter");
  for (char c : name) {
    if (!alpha(c) && !digit(c) && c != '_' && c != '.' && c != '-') {
      return bad("may contain only letters, digits, '_', '.' and '-'");
    }
  }
  return Ok();
}

}  // namespace tessera::storage
