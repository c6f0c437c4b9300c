// Layout: where each qube's and template's files live (names are checked by
// ValidateName, common/names.h, before they become path components).

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

}  // namespace tessera::storage
