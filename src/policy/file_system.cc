#include "policy/file_system.h"

#include <set>

namespace tessera::policy {

std::string NormalizePath(std::string_view path) {
  const bool absolute = path.starts_with('/');
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!absolute) {
        parts.push_back(part);
      }
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out = absolute ? "/" : "";
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) out += '/';
    out += parts[k];
  }
  return out;
}

std::string MemoryFileSystem::Resolve(std::string_view dir, std::string_view path) const {
  if (path.starts_with('/') || dir.empty()) return NormalizePath(path);
  std::string joined(dir);
  joined += '/';
  joined += path;
  return NormalizePath(joined);
}

PolicyFileSystem::Kind MemoryFileSystem::Stat(const std::string& path) const {
  if (files_.contains(path)) return Kind::kFile;
  const std::string prefix = path.empty() ? "" : path + "/";
  auto it = files_.lower_bound(prefix);
  if (it != files_.end() && it->first.starts_with(prefix)) return Kind::kDirectory;
  return Kind::kMissing;
}

Result<std::string> MemoryFileSystem::Read(const std::string& path) const {
  auto it = files_.find(path);
  if (it == files_.end()) return Err("no such policy file: " + path);
  return it->second;
}

Result<std::vector<std::string>> MemoryFileSystem::List(const std::string& dir) const {
  if (Stat(dir) != Kind::kDirectory) return Err("not a directory: " + dir);
  const std::string prefix = dir.empty() ? "" : dir + "/";
  std::set<std::string> names;
  for (auto it = files_.lower_bound(prefix); it != files_.end() && it->first.starts_with(prefix);
       ++it) {
    std::string_view rest = std::string_view(it->first).substr(prefix.size());
    names.emplace(rest.substr(0, rest.find('/')));
  }
  return std::vector<std::string>(names.begin(), names.end());
}

}  // namespace tessera::policy
