#include "policy/loader.h"

#include <dirent.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>

#include "common/fs.h"

namespace tessera::policy {

std::string RealFileSystem::Resolve(std::string_view dir, std::string_view path) const {
  std::string joined;
  if (path.starts_with('/') || dir.empty()) {
    joined = std::string(path);
  } else {
    joined = std::string(dir) + "/" + std::string(path);
  }
  std::error_code ec;
  std::filesystem::path resolved = std::filesystem::weakly_canonical(joined, ec);
  if (ec) return NormalizePath(joined);
  std::string out = resolved.string();
  while (out.size() > 1 && out.ends_with('/')) out.pop_back();
  return out;
}

PolicyFileSystem::Kind RealFileSystem::Stat(const std::string& path) const {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Kind::kMissing;
  if (S_ISREG(st.st_mode)) return Kind::kFile;
  if (S_ISDIR(st.st_mode)) return Kind::kDirectory;
  return Kind::kOther;
}

Result<std::string> RealFileSystem::Read(const std::string& path) const {
  return ReadRegularFile(path, 16u << 20);
}

Result<std::vector<std::string>> RealFileSystem::List(const std::string& dir) const {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return Err(Error::FromErrno("opendir " + dir));
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  if (errno != 0) return Err(Error::FromErrno("readdir " + dir));
  return names;
}

tl::expected<Policy, std::vector<LoadError>> LoadPolicyDirs(const PolicyDirs& dirs) {
  return LoadPolicyDirs(dirs, RealFileSystem());
}

tl::expected<Policy, std::vector<LoadError>> LoadPolicyDirs(const PolicyDirs& dirs,
                                                            const PolicyFileSystem& fs) {
  return Policy::Load(fs, DirectorySpec(dirs));
}

}  // namespace tessera::policy
