// Templates Nix built (nix_template.h): closure files read as untrusted
// input, the skeleton of a generation, the closure image made from exactly
// the closure, and the GC roots of running qubes.

#include "storage/nix_template.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/fs.h"
#include "common/log.h"
#include "common/names.h"
#include "common/path_search.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generations.h"
#include "storage/internal.h"
#include "storage/template_internal.h"

namespace tessera::storage {
namespace {

using json = nlohmann::json;

constexpr const char* kMetaDir = "nix/store/.tessera";
constexpr const char* kSourceFile = "source.json";
constexpr const char* kPathsFile = "store-paths";
constexpr size_t kMaxClosureBytes = 64u << 20;
constexpr size_t kMaxClosurePaths = 200000;
constexpr const char* kDefaultGcRoots = "/nix/var/nix/gcroots/tessera";

// /etc entries of a NixOS system the qube gets from WriteMinimalEtc instead:
// its users, its name and its network are tessera's.
constexpr std::string_view kOwnEtc[] = {"passwd", "group",       "shadow", "hostname",
                                        "hosts",  "resolv.conf", "shells", "profile"};

Status Symlink(const std::string& target, int dir_fd, const std::string& name,
               const std::string& what) {
  TRY(Syscall("symlink " + what,
              [&] { return ::symlinkat(target.c_str(), dir_fd, name.c_str()); }));
  return Ok();
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The skeleton: mount points and /etc as every template has them, the
// software of the root reachable where programs look for it.
Status WriteSkeleton(const NixSource& source, int root_fd, const std::string& root_path) {
  TRY(internal::MakeMountPoints(root_fd, root_path));
  TRY(internal::WriteMinimalEtc(root_fd, root_path));
  // A NixOS system keeps its software in sw/; a buildEnv is the software.
  bool nixos = IsDirectory(source.root + "/sw");
  TRY(Symlink(nixos ? source.root + "/sw" : source.root, root_fd, "sw", root_path + "/sw"));
  for (const char* dir : {"bin", "sbin"}) {
    TRY(Symlink(std::string("sw/") + dir, root_fd, dir, root_path + "/" + dir));
  }
  TRY(internal::MakeDir(root_fd, "usr", 0755, root_path));
  UniqueFd usr = TRY(internal::OpenDirAt(root_fd, "usr", root_path + "/usr"));
  for (const char* dir : {"bin", "sbin"}) {
    TRY(Symlink(std::string("../sw/") + dir, usr.get(), dir, root_path + "/usr/" + dir));
  }
  // usr/local: an app qube's comes from its volume.
  TRY(internal::MakeDir(usr.get(), "local", 0755, root_path + "/usr"));
  if (nixos && IsDirectory(source.root + "/etc")) {
    // As NixOS's activation does: /etc/static is the system's etc, and each
    // of its entries is linked through it.
    UniqueFd etc = TRY(internal::OpenDirAt(root_fd, "etc", root_path + "/etc"));
    TRY(Symlink(source.root + "/etc", etc.get(), "static", root_path + "/etc/static"));
    UniqueFd system_etc = TRY(internal::OpenDir(source.root + "/etc"));
    TRY(internal::ForEachEntry(
        system_etc.get(), source.root + "/etc", [&](const std::string& name) -> Status {
          if (name == "static" ||
              std::find(std::begin(kOwnEtc), std::end(kOwnEtc), name) != std::end(kOwnEtc)) {
            return Ok();
          }
          return Symlink("/etc/static/" + name, etc.get(), name, root_path + "/etc/" + name);
        }));
  }
  TRY(internal::MakeDir(root_fd, "nix", 0755, root_path));
  UniqueFd nix = TRY(internal::OpenDirAt(root_fd, "nix", root_path + "/nix"));
  TRY(internal::MakeDir(nix.get(), "store", 0755, root_path + "/nix"));
  UniqueFd store = TRY(internal::OpenDirAt(nix.get(), "store", root_path + "/nix/store"));
  TRY(internal::MakeDir(store.get(), ".tessera", 0700, root_path + "/nix/store"));
  return Ok();
}

// `paths` bound into a fresh tmpfs at `staging`, in a mount namespace of
// this thread's own (so the host never sees it and it vanishes with the
// thread), then `argv` run there.
Status RunOnStagedClosure(const std::vector<std::string>& paths, const std::string& staging,
                          const std::vector<std::string>& argv) {
  Status result = Ok();
  std::thread worker([&] {
    result = [&]() -> Status {
      TRY(Syscall("unshare a mount namespace", [] { return ::unshare(CLONE_NEWNS); }));
      TRY(Syscall("make the staging namespace private",
                  [] { return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr); }));
      TRY(Syscall("mount a tmpfs at " + staging, [&] {
        return ::mount("tessera-closure", staging.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                       "mode=0755");
      }));
      for (const std::string& path : paths) {
        std::string base = path.substr(path.rfind('/') + 1);
        std::string target = staging + "/" + base;
        struct stat st {};
        TRY(Syscall("lstat " + path, [&] { return ::lstat(path.c_str(), &st); }));
        if (S_ISLNK(st.st_mode)) {
          // A store path may be a symlink: recreated, as a bind cannot hold one.
          std::string link(PATH_MAX, '\0');
          ssize_t n = ::readlink(path.c_str(), link.data(), link.size());
          if (n < 0) return Err(Error::FromErrno("readlink " + path));
          link.resize(static_cast<size_t>(n));
          TRY(Syscall("symlink " + target,
                      [&] { return ::symlink(link.c_str(), target.c_str()); }));
          continue;
        }
        if (S_ISDIR(st.st_mode)) {
          TRY(Syscall("mkdir " + target, [&] { return ::mkdir(target.c_str(), 0755); }));
        } else {
          UniqueFd f(::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
          if (!f) return Err(Error::FromErrno("create " + target));
        }
        TRY(Syscall("bind " + path, [&] {
          return ::mount(path.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr);
        }));
      }
      return internal::RunCommand(argv, nullptr);
    }();
  });
  worker.join();
  return result;
}

Result<std::string> FindTool(const std::string& name, const std::string& package) {
  std::string found = FindOnPath(name);
  for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/sbin/"}) {
    if (found.empty() && IsExecutable(dir + name)) found = dir + name;
  }
  if (found.empty()) {
    return Err(Error(name + " not found (install " + package + ")", ENOENT));
  }
  return found;
}

Status BuildImage(const std::vector<std::string>& paths, ClosureImage image,
                  const std::string& out) {
  std::vector<std::string> argv;
  std::string staging_tmpl = DirName(out) + "/.staging-XXXXXX";
  if (::mkdtemp(staging_tmpl.data()) == nullptr) {
    return Err(Error::FromErrno("mkdtemp " + staging_tmpl));
  }
  std::string staging = staging_tmpl;
  ScopeGuard remove_staging([&] { ::rmdir(staging.c_str()); });
  if (image == ClosureImage::kErofs) {
    // Files keep the store's modes; owners become root (they are root's in
    // the store already). Uncompressed: the lz4 of erofs-utils 1.5 would
    // need the kernel's lz4 too, and reads stay plain page-cache copies.
    argv = {
        TRY(FindTool("mkfs.erofs", "erofs-utils")), "--quiet", "--all-root", "-x-1", out, staging};
  } else {
    argv = {TRY(FindTool("mksquashfs", "squashfs-tools")),
            staging,
            out,
            "-noappend",
            "-all-root",
            "-no-xattrs",
            "-no-progress",
            "-quiet"};
  }
  return RunOnStagedClosure(paths, staging, argv);
}

std::string EscapeStateDir(const std::string& state_dir) {
  std::string out;
  for (char c : state_dir) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.';
    if (c == '/') {
      if (!out.empty()) out += '-';
    } else if (plain) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  return out.empty() ? "root" : out;
}

}  // namespace

Result<ClosureImage> ParseClosureImage(std::string_view text) {
  if (text == "erofs") return ClosureImage::kErofs;
  if (text == "squashfs") return ClosureImage::kSquashfs;
  if (text == "none") return ClosureImage::kNone;
  return Err(Error(
      "unknown closure image \"" + std::string(text) + "\" (expected erofs, squashfs or none)",
      EINVAL));
}

std::string_view ToString(ClosureImage image) {
  switch (image) {
    case ClosureImage::kErofs:
      return "erofs";
    case ClosureImage::kSquashfs:
      return "squashfs";
    case ClosureImage::kNone:
      return "none";
  }
  return "none";
}

Result<std::vector<std::string>> ReadClosure(const std::string& closure) {
  std::string file = IsDirectory(closure) ? closure + "/store-paths" : closure;
  std::string text = TRY_CTX(ReadRegularFile(file, kMaxClosureBytes), "closure");
  std::set<std::string> paths;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.empty()) continue;
    std::string where = file + ":" + std::to_string(line_no);
    if (!IsStorePath(line)) {
      return Err(Error(where + ": not a store path: \"" + line.substr(0, 80) + "\"", EINVAL));
    }
    struct stat st {};
    if (::lstat(line.c_str(), &st) != 0) {
      return Err(Error::FromErrno(where + ": " + line));
    }
    paths.insert(std::move(line));
    if (paths.size() > kMaxClosurePaths) {
      return Err(
          Error(file + ": more than " + std::to_string(kMaxClosurePaths) + " store paths", E2BIG));
    }
  }
  if (paths.empty()) return Err(Error(file + ": lists no store paths", EINVAL));
  return std::vector<std::string>(paths.begin(), paths.end());
}

Status BuildNixGeneration(const NixSource& source, int root_fd, const std::string& root_path) {
  if (!IsStorePath(source.root)) {
    return Err(Error("nix root \"" + source.root + "\" is not a store path", EINVAL));
  }
  std::vector<std::string> paths = TRY(ReadClosure(source.closure));
  if (!std::binary_search(paths.begin(), paths.end(), source.root)) {
    return Err(Error(source.closure + ": does not list the root " + source.root +
                         " (is it the closure of another path?)",
                     EINVAL));
  }
  TRY(WriteSkeleton(source, root_fd, root_path));
  std::string meta_path = root_path + "/" + kMetaDir;
  UniqueFd meta = TRY(internal::OpenDirAt(root_fd, kMetaDir, meta_path));
  if (source.image != ClosureImage::kNone) {
    TRY_CTX(BuildImage(paths, source.image, ClosureImagePath(root_path, source.image)),
            "closure image of " + source.root);
  }
  // The paths the image holds, for whoever inspects it; source.json stays
  // small, as every start of a qube reads it.
  std::string listed;
  for (const std::string& path : paths) listed += path + "\n";
  TRY(internal::WriteFileAt(meta.get(), kPathsFile, listed, 0600, meta_path + "/" + kPathsFile));
  json doc = {{"root", source.root},
              {"closure", source.closure},
              {"image", std::string(ToString(source.image))}};
  TRY(internal::WriteFileAt(meta.get(), kSourceFile, doc.dump(1) + "\n", 0600,
                            meta_path + "/" + kSourceFile));
  return Ok();
}

Result<std::optional<NixSource>> ReadNixSource(const std::string& generation_path) {
  std::string file = generation_path + "/" + kMetaDir + "/" + kSourceFile;
  auto text = ReadRegularFile(file, 64u << 10);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return std::optional<NixSource>{};
    return Err(std::move(text).error());
  }
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.value("root", json()).is_string() ||
      !doc.value("closure", json()).is_string() || !doc.value("image", json()).is_string()) {
    return Err(Error(file + ": not a Nix generation record", EINVAL));
  }
  NixSource out;
  out.root = doc["root"].get<std::string>();
  out.closure = doc["closure"].get<std::string>();
  out.image = TRY_CTX(ParseClosureImage(doc["image"].get<std::string>()), file);
  return std::optional<NixSource>(std::move(out));
}

std::string ClosureImagePath(const std::string& generation_path, ClosureImage image) {
  if (image == ClosureImage::kNone) return "";
  return generation_path + "/" + kMetaDir + "/closure." + std::string(ToString(image));
}

Result<bool> PublishNixGeneration(const Layout& layout, const std::string& template_name,
                                  const NixSource& source) {
  Generation current = TRY(CurrentGeneration(layout, template_name));
  std::optional<NixSource> now = TRY(ReadNixSource(current.path));
  if (now && *now == source) return false;
  Log(LogLevel::kInfo, "new Nix generation of a template",
      {{"template", template_name}, {"root", source.root}});
  TRY(PublishGeneration(layout, template_name, [&](int fd, const std::string& path) {
    return BuildNixGeneration(source, fd, path);
  }));
  return true;
}

std::string NixGcRootsDir(const Layout& layout) {
  const char* env = std::getenv("TESSERA_NIX_GCROOTS");
  std::string base = env != nullptr && env[0] == '/' ? env : kDefaultGcRoots;
  return base + "/" + EscapeStateDir(layout.state_dir);
}

Status HoldNixRoot(const Layout& layout, const std::string& qube, const std::string& store_path) {
  TRY(ValidateName(qube));
  if (!IsStorePath(store_path)) {
    return Err(Error("GC root of " + qube + ": not a store path: " + store_path, EINVAL));
  }
  std::string dir = NixGcRootsDir(layout);
  TRY(MakeDirs(dir, 0755));
  std::string tmp = dir + "/." + qube + ".tmp";
  ::unlink(tmp.c_str());
  TRY(Syscall("symlink " + tmp, [&] { return ::symlink(store_path.c_str(), tmp.c_str()); }));
  std::string link = dir + "/" + qube;
  TRY(Syscall("rename " + tmp + " to " + link,
              [&] { return ::rename(tmp.c_str(), link.c_str()); }));
  return Ok();
}

Status ReleaseNixRoot(const Layout& layout, const std::string& qube) {
  TRY(ValidateName(qube));
  std::string link = NixGcRootsDir(layout) + "/" + qube;
  if (::unlink(link.c_str()) != 0 && errno != ENOENT) {
    return Err(Error::FromErrno("remove GC root " + link));
  }
  return Ok();
}

Status PruneNixRoots(const Layout& layout, const std::set<std::string>& running) {
  std::string dir = NixGcRootsDir(layout);
  auto dir_fd = internal::OpenDir(dir, O_NOFOLLOW);
  if (!dir_fd) {
    if (dir_fd.error().errno_value() == ENOENT) return Ok();
    return Err(std::move(dir_fd).error());
  }
  std::vector<std::string> stale;
  TRY(internal::ForEachEntry(dir_fd->get(), dir, [&](const std::string& name) {
    bool leftover = name.size() > 5 && name[0] == '.' && name.ends_with(".tmp");
    if (leftover || (IsValidName(name) && running.count(name) == 0)) stale.push_back(name);
    return Ok();
  }));
  for (const std::string& name : stale) {
    if (::unlinkat(dir_fd->get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      return Err(Error::FromErrno("remove GC root " + dir + "/" + name));
    }
    Log(LogLevel::kInfo, "stale GC root removed", {{"qube", name}});
  }
  return Ok();
}

}  // namespace tessera::storage
