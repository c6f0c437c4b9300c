// Templates: directory trees under S/templates/<name>/ that qubes use as
// their (read-only) root.
//
// Build protocol (atomic): under an exclusive flock on
// S/templates/.<name>.lock, remove leftovers of a crashed build of <name>
// (S/templates/.<name>.tmp-*), build into a fresh .<name>.tmp-XXXXXX, write
// template.json, then rename it to <name> (RENAME_NOREPLACE) or, with
// replace, swap it with the old one (RENAME_EXCHANGE) and delete the old
// tree. A failed build removes its temporary directory; one killed midway
// leaves only a hidden .tmp directory that the next build of that name
// removes and that ListTemplates never shows.
//
// Template files are owned by host root; a cell shows them root-owned inside
// through an idmapped mount, so nothing here chowns into a qube's id range.
// The flip side: what a template qube writes as its root is host root on
// disk (setuid files included), so S/templates and each S/templates/<name>
// are 0700 root and no host user can reach a template tree.

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/log.h"
#include "common/scope_guard.h"
#include "common/syscall.h"
#include "common/unique_fd.h"
#include "storage/generation_internal.h"
#include "storage/internal.h"
#include "storage/nix_template.h"
#include "storage/storage.h"
#include "storage/template_internal.h"

namespace tessera::storage::internal {

// ---- shared skeleton -------------------------------------------------------

Status MakeDir(int dir_fd, const std::string& rel, mode_t mode, const std::string& root_path) {
  std::string what = root_path + "/" + rel;
  TRY(Syscall("mkdir " + what, [&] { return ::mkdirat(dir_fd, rel.c_str(), mode); }));
  // Exact mode regardless of umask (1777 for tmp).
  UniqueFd fd = TRY(internal::OpenDirAt(dir_fd, rel, what));
  TRY(Syscall("chmod " + what, [&] { return ::fchmod(fd.get(), mode); }));
  return Ok();
}

// Empty mount points every cell fills (proc, dev, tmp, ...), plus the
// directory the RPC agent uses.
Status MakeMountPoints(int root_fd, const std::string& root_path) {
  struct Dir {
    const char* rel;
    mode_t mode;
  };
  static constexpr Dir kDirs[] = {
      {"proc", 0555}, {"sys", 0555},      {"dev", 0755},      {"tmp", 01777},
      {"run", 0755},  {"home", 0755},     {"rw", 0755},       {"mnt", 0755},
      {"var", 0755},  {"var/tmp", 01777}, {"root", 0700},     {"etc", 0755},
      {"etc/tessera-rpc", 0755},
  };
  for (const Dir& d : kDirs) TRY(MakeDir(root_fd, d.rel, d.mode, root_path));
  return Ok();
}

Status WriteMinimalEtc(int root_fd, const std::string& root_path) {
  UniqueFd etc = TRY(internal::OpenDirAt(root_fd, "etc", root_path + "/etc"));
  std::string etc_path = root_path + "/etc";
  struct File {
    const char* name;
    const char* content;
    mode_t mode;
  };
  static constexpr File kFiles[] = {
      {"passwd",
       "root:x:0:0:root:/root:/bin/sh\n"
       "user:x:1000:1000:user:/home/user:/bin/sh\n"
       "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
       0644},
      {"group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", 0644},
      {"shadow", "root:*:1::::::\nuser:*:1::::::\nnobody:*:1::::::\n", 0600},
      // Placeholder: the cell sets the qube's name as its hostname.
      {"hostname", "localhost\n", 0644},
      {"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0644},
      // Qubes' virtual DNS: the netvm redirects it to its resolvers.
      {"resolv.conf", "nameserver 10.139.1.1\nnameserver 10.139.1.2\n", 0644},
      {"shells", "/bin/sh\n/bin/ash\n", 0644},
      {"profile",
       "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"
       "/run/tessera/tools/bin\n"
       "export HOME=\"${HOME:-/root}\"\n"
       "PS1='\\u@\\h:\\w\\$ '\n",
       0644},
  };
  for (const File& f : kFiles) {
    TRY(internal::WriteFileAt(etc.get(), f.name, f.content, f.mode, etc_path + "/" + f.name));
  }
  return Ok();
}

}  // namespace tessera::storage::internal

namespace tessera::storage {
namespace {

using json = nlohmann::json;

constexpr int kTemplateFormat = 1;
constexpr const char* kDefaultMirror = "http://deb.debian.org/debian";

std::string TemplatesDir(const Layout& layout) { return layout.state_dir + "/templates"; }

using internal::MakeDir;
using internal::MakeMountPoints;
using internal::WriteMinimalEtc;

// ---- busybox ---------------------------------------------------------------

Result<std::string> FindBusybox(const TemplateBuildOptions& options) {
  if (!options.busybox.empty()) return options.busybox;
  if (const char* env = std::getenv("TESSERA_BUSYBOX"); env != nullptr && env[0] != '\0') {
    return std::string(env);
  }
  for (const char* candidate : {"/bin/busybox", "/usr/bin/busybox"}) {
    if (::access(candidate, X_OK) == 0) return std::string(candidate);
  }
  return Err(Error("no busybox found (install Debian's busybox-static or set TESSERA_BUSYBOX)",
                   ENOENT));
}

Status BuildBusybox(const TemplateBuildOptions& options, int root_fd, const std::string& root_path,
                    std::string* source_detail) {
  std::string busybox = TRY(FindBusybox(options));
  busybox = TRY(internal::RealPath(busybox));
  TRY(internal::CheckStaticElf(busybox));
  *source_detail = busybox;

  std::string list;
  TRY_CTX(internal::RunCommand({busybox, "--list-full"}, &list), "list busybox applets");
  std::vector<internal::Applet> applets = TRY(internal::ParseAppletList(list));

  TRY(MakeMountPoints(root_fd, root_path));
  for (const char* d : {"bin", "sbin", "usr", "usr/bin", "usr/sbin"}) {
    TRY(MakeDir(root_fd, d, 0755, root_path));
  }
  UniqueFd bin = TRY(internal::OpenDirAt(root_fd, "bin", root_path + "/bin"));
  TRY(internal::CopyFileAt(busybox, bin.get(), "busybox", 0755, root_path + "/bin/busybox"));
  for (const auto& applet : applets) {
    std::string rel = applet.dir + "/" + applet.name;
    // Relative links work both inside the cell and on the host (tests).
    std::string target = applet.dir == "bin" ? "busybox"
                         : applet.dir == "sbin" ? "../bin/busybox"
                                                : "../../bin/busybox";
    if (::symlinkat(target.c_str(), root_fd, rel.c_str()) != 0) {
      if (errno == EEXIST) continue;  // listed twice
      return Err(Error::FromErrno("symlink " + root_path + "/" + rel));
    }
  }
  TRY(WriteMinimalEtc(root_fd, root_path));
  return Ok();
}

// ---- host ------------------------------------------------------------------

Status BuildHost(int root_fd, const std::string& root_path, std::vector<std::string>* binds) {
  TRY(MakeMountPoints(root_fd, root_path));
  TRY(MakeDir(root_fd, "usr", 0755, root_path));  // host /usr is bound here read-only
  for (const char* link : {"bin", "sbin", "lib", "lib64"}) {
    std::string target = std::string("usr/") + link;
    TRY(Syscall("symlink " + root_path + "/" + link,
                [&] { return ::symlinkat(target.c_str(), root_fd, link); }));
  }
  TRY(WriteMinimalEtc(root_fd, root_path));
  UniqueFd etc = TRY(internal::OpenDirAt(root_fd, "etc", root_path + "/etc"));
  // The dynamic loader's cache, so host binaries find their libraries quickly
  // (without it ld.so still searches the default paths).
  if (::access("/etc/ld.so.cache", R_OK) == 0) {
    TRY(internal::CopyFileAt("/etc/ld.so.cache", etc.get(), "ld.so.cache", 0644,
                             root_path + "/etc/ld.so.cache"));
  }
  // Debian's /usr/bin/awk, editor, ... are symlinks through /etc/alternatives.
  struct stat st {};
  if (::lstat("/etc/alternatives", &st) == 0 && S_ISDIR(st.st_mode)) {
    TRY(MakeDir(etc.get(), "alternatives", 0755, root_path + "/etc"));
    UniqueFd alt = TRY(internal::OpenDirAt(etc.get(), "alternatives", root_path + "/etc/alternatives"));
    TRY(internal::CopyTree("/etc/alternatives", alt.get(), root_path + "/etc/alternatives"));
  }
  binds->push_back("/usr");
  return Ok();
}

// ---- debootstrap -------------------------------------------------------------

Result<std::string> DefaultMirror() {
  std::vector<std::string> files = {"/etc/apt/sources.list"};
  if (DIR* d = ::opendir("/etc/apt/sources.list.d")) {
    std::vector<std::string> names;
    while (struct dirent* ent = ::readdir(d)) {
      std::string n = ent->d_name;
      auto ends = [&](const std::string& suffix) {
        return n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
      };
      if (ends(".list") || ends(".sources")) names.push_back("/etc/apt/sources.list.d/" + n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    files.insert(files.end(), names.begin(), names.end());
  }
  for (const auto& f : files) {
    auto text = ReadFile(f, 1u << 20);
    if (!text) continue;
    std::string mirror = internal::ParseAptMirror(*text);
    if (!mirror.empty()) return mirror;
  }
  return std::string(kDefaultMirror);
}

Status BuildDebootstrap(const TemplateBuildOptions& options, const std::string& root_path,
                        std::string* source_detail) {
  if (options.suite.empty() ||
      options.suite.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return Err(Error("debootstrap suite \"" + options.suite + "\": expected a Debian suite name",
                     EINVAL));
  }
  std::string mirror = options.mirror.empty() ? TRY(DefaultMirror()) : options.mirror;
  if (mirror.rfind("http://", 0) != 0 && mirror.rfind("https://", 0) != 0 &&
      mirror.rfind("file:/", 0) != 0) {
    return Err(Error("debootstrap mirror \"" + mirror + "\": expected an http(s):// or file:/ URL",
                     EINVAL));
  }
  std::string debootstrap;
  for (const char* candidate : {"/usr/sbin/debootstrap", "/sbin/debootstrap", "/usr/bin/debootstrap"}) {
    if (::access(candidate, X_OK) == 0) {
      debootstrap = candidate;
      break;
    }
  }
  if (debootstrap.empty()) return Err(Error("debootstrap not installed (apt-get install debootstrap)", ENOENT));
  *source_detail = "suite=" + options.suite + " mirror=" + mirror;
  Log(LogLevel::kInfo, "running debootstrap", {{"suite", options.suite}, {"mirror", mirror}});
  TRY_CTX(internal::RunCommand({debootstrap, "--variant=minbase", options.suite, root_path, mirror},
                               nullptr),
          "debootstrap " + options.suite);
  // Make sure the cell's mount points and the user exist in the new tree.
  UniqueFd root_fd = TRY(internal::OpenDir(root_path, O_NOFOLLOW));
  for (const char* d : {"proc", "sys", "dev", "tmp", "run", "home", "rw", "mnt", "root",
                        "etc/tessera-rpc"}) {
    if (::mkdirat(root_fd.get(), d, 0755) != 0 && errno != EEXIST) {
      return Err(Error::FromErrno("mkdir " + root_path + "/" + d));
    }
  }
  // Templates have no network: apt goes through the updates proxy
  // (qubes.UpdatesProxy, docs/NETWORK.md), whose forwarder the daemon starts
  // in templates. Qubes made from the template have the file too, and no
  // forwarder: their apt reaches nothing, as in Qubes.
  UniqueFd apt_conf = TRY(
      internal::OpenDirAt(root_fd.get(), "etc/apt/apt.conf.d", root_path + "/etc/apt/apt.conf.d"));
  TRY(internal::WriteFileAt(apt_conf.get(), "01tessera-updates-proxy",
                            "Acquire::http::Proxy \"http://127.0.0.1:8082/\";\n"
                            "Acquire::https::Proxy \"http://127.0.0.1:8082/\";\n",
                            0644, root_path + "/etc/apt/apt.conf.d/01tessera-updates-proxy"));
  return Ok();
}

// ---- directory ----------------------------------------------------------------

bool IsSameOrBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

Status BuildFromDirectory(const Layout& layout, const TemplateBuildOptions& options, int root_fd,
                          const std::string& root_path, std::string* source_detail) {
  if (options.directory.empty()) return Err(Error("--from DIR: no directory given", EINVAL));
  std::string source = TRY(internal::RealPath(options.directory));
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) return Err(Error::FromErrno("stat " + source));
  if (!S_ISDIR(st.st_mode)) return Err(Error(source + ": not a directory", ENOTDIR));
  std::string state = TRY(internal::RealPath(layout.state_dir));
  if (IsSameOrBelow(source, state)) {
    return Err(Error(options.directory + ": is inside the state directory " + state +
                         " (refusing to import tessera's own files)",
                     EINVAL));
  }
  if (IsSameOrBelow(state, source)) {
    return Err(Error(options.directory + ": contains the state directory " + state +
                         " (the copy would include itself)",
                     EINVAL));
  }
  *source_detail = source;
  return internal::CopyTree(source, root_fd, root_path);
}

// ---- template.json ----------------------------------------------------------

std::string BuiltFrom(const TemplateBuildOptions& options, const std::string& detail) {
  switch (options.source) {
    case TemplateSource::kBusybox: return "busybox";
    case TemplateSource::kDebootstrap: return "debootstrap";
    case TemplateSource::kHost: return "host";
    case TemplateSource::kDirectory: return "dir:" + detail;
    case TemplateSource::kNix:
      return "nix";
  }
  return "unknown";
}

std::string SerializeInfo(const TemplateInfo& info) {
  json doc = {{"format", info.format},         {"name", info.name},
              {"built_from", info.built_from}, {"source", info.source},
              {"created", info.created},       {"host_ro_binds", info.host_ro_binds}};
  return doc.dump(2) + "\n";
}

// Holds S/templates/.<name>.lock exclusively while alive.
Result<UniqueFd> LockTemplate(const Layout& layout, const std::string& name) {
  std::string path = TemplatesDir(layout) + "/." + name + ".lock";
  UniqueFd fd(TRY(Syscall("open " + path, [&] {
    return ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  })));
  TRY(Syscall("flock " + path, [&] { return ::flock(fd.get(), LOCK_EX); }));
  return fd;
}

// Removes hidden .<name>.tmp-* / .<name>.old-* directories of earlier builds.
Status CleanLeftovers(const Layout& layout, const std::string& name) {
  return internal::RemoveLeftovers(TemplatesDir(layout), {"." + name + ".tmp-", "." + name + ".old-"});
}

Status Populate(const Layout& layout, const TemplateBuildOptions& options, const std::string& tmp,
                TemplateInfo* info) {
  // The tree is generation 1, and root -> gen/1 names it current
  // (generations.h).
  std::string root_path = tmp + "/gen/1";
  UniqueFd tmp_fd = TRY(internal::OpenDir(tmp, O_NOFOLLOW));
  TRY(MakeDir(tmp_fd.get(), "gen", 0700, tmp));
  UniqueFd gen_fd = TRY(internal::OpenDirAt(tmp_fd.get(), "gen", tmp + "/gen"));
  TRY(MakeDir(gen_fd.get(), "1", 0755, tmp + "/gen"));
  TRY(Syscall("symlink " + tmp + "/root",
              [&] { return ::symlinkat("gen/1", tmp_fd.get(), "root"); }));
  UniqueFd root_fd = TRY(internal::OpenDirAt(gen_fd.get(), "1", root_path));
  std::string detail;
  switch (options.source) {
    case TemplateSource::kBusybox:
      TRY(BuildBusybox(options, root_fd.get(), root_path, &detail));
      break;
    case TemplateSource::kHost:
      TRY(BuildHost(root_fd.get(), root_path, &info->host_ro_binds));
      detail = "host /usr (read-only bind)";
      break;
    case TemplateSource::kDebootstrap:
      TRY(BuildDebootstrap(options, root_path, &detail));
      TRY(internal::EnsureQubeUser(root_fd.get(), root_path));
      break;
    case TemplateSource::kDirectory:
      TRY(BuildFromDirectory(layout, options, root_fd.get(), root_path, &detail));
      TRY(internal::EnsureQubeUser(root_fd.get(), root_path));
      break;
    case TemplateSource::kNix:
      // Each generation says which Nix root it holds (nix_template.h).
      TRY(BuildNixGeneration(options.nix, root_fd.get(), root_path));
      detail = "nix " + options.nix.root;
      break;
  }
  if (options.before_publish) TRY(options.before_publish());
  info->built_from = BuiltFrom(options, detail);
  info->source = detail;
  info->created = internal::NowRfc3339();
  info->format = kTemplateFormat;
  TRY(internal::WriteFileAt(tmp_fd.get(), "template.json", SerializeInfo(*info), 0644,
                            tmp + "/template.json"));
  TRY(Syscall("fsync " + tmp, [&] { return ::fsync(tmp_fd.get()); }));
  return Ok();
}

}  // namespace

// ---- internal (exposed for tests) ------------------------------------------

namespace internal {

Status BuildBusyboxTree(int root_fd, const std::string& root_path, std::string* detail) {
  return BuildBusybox(TemplateBuildOptions{}, root_fd, root_path, detail);
}

Status CheckStaticElf(const std::string& path) {
  UniqueFd fd(TRY(Syscall("open " + path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); })));
  Elf64_Ehdr eh {};
  ssize_t n = TRY(SyscallSize("read " + path, [&] { return ::pread(fd.get(), &eh, sizeof eh, 0); }));
  if (n != static_cast<ssize_t>(sizeof eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Err(Error(path + ": not a 64-bit ELF executable", ENOEXEC));
  }
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph {};
    off_t off = static_cast<off_t>(eh.e_phoff + uint64_t{i} * sizeof ph);
    n = TRY(SyscallSize("read " + path, [&] { return ::pread(fd.get(), &ph, sizeof ph, off); }));
    if (n != static_cast<ssize_t>(sizeof ph)) return Err(Error(path + ": truncated ELF", ENOEXEC));
    if (ph.p_type == PT_INTERP) {
      return Err(Error(path + ": dynamically linked; a template needs a static busybox "
                              "(Debian package busybox-static)",
                       ENOEXEC));
    }
  }
  return Ok();
}

Result<std::vector<Applet>> ParseAppletList(const std::string& text) {
  std::vector<Applet> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    size_t slash = line.find_last_of('/');
    if (slash == std::string::npos) continue;  // e.g. "linuxrc": not a command
    Applet a{line.substr(0, slash), line.substr(slash + 1)};
    if (a.dir != "bin" && a.dir != "sbin" && a.dir != "usr/bin" && a.dir != "usr/sbin") continue;
    if (a.name.empty() || a.name == "." || a.name == ".." || a.name == "busybox") continue;
    out.push_back(std::move(a));
  }
  if (out.size() < 10) {
    return Err(Error("busybox --list-full listed only " + std::to_string(out.size()) +
                         " applets; is it really busybox?",
                     EINVAL));
  }
  return out;
}

std::string ParseAptMirror(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    std::string uri;
    if (first == "deb") {
      std::string w;
      while (words >> w) {
        if (w[0] == '[') {
          while (w.back() != ']' && (words >> w)) {
          }
          continue;
        }
        uri = w;
        break;
      }
    } else if (first == "URIs:") {
      words >> uri;
    }
    if (uri.empty() || uri.find("security") != std::string::npos) continue;
    if (uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0) {
      while (uri.size() > 1 && uri.back() == '/') uri.pop_back();
      return uri;
    }
  }
  return "";
}

}  // namespace internal

// ---- public API ---------------------------------------------------------------

Result<TemplateInfo> BuildTemplate(const Layout& layout, const std::string& name,
                                   const TemplateBuildOptions& options) {
  TRY(ValidateName(name, "template"));
  std::string dir = TemplatesDir(layout);
  TRY(internal::EnsurePrivateStateDir(dir));
  UniqueFd lock = TRY(LockTemplate(layout, name));
  TRY(CleanLeftovers(layout, name));

  std::string final_path = layout.TemplateDir(name);
  struct stat st {};
  bool exists = ::lstat(final_path.c_str(), &st) == 0;
  if (exists && !options.replace) {
    return Err(Error("template " + name + " already exists at " + final_path +
                         " (use --replace to rebuild it)",
                     EEXIST));
  }
  // Replacing deletes every generation: not while a qube runs on one.
  if (exists) TRY(internal::CheckTemplateUnused(layout, name, "replace"));

  std::string tmpl = dir + "/." + name + ".tmp-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + dir));
  std::string tmp = tmpl;
  ScopeGuard cleanup([&] {
    auto removed = RemoveTree(tmp);
    if (!removed) {
      Log(LogLevel::kWarn, "could not remove failed template build",
          {{"path", tmp}, {"error", removed.error().ToString()}});
    }
  });
  // 0700 (mkdtemp's mode, made explicit): the root tree inside may hold
  // host-root setuid files a template qube wrote; see EnsurePrivateStateDir.
  TRY(Syscall("chmod " + tmp, [&] { return ::chmod(tmp.c_str(), 0700); }));

  TemplateInfo info;
  info.name = name;
  TRY_CTX(Populate(layout, options, tmp, &info), "build template " + name);

  UniqueFd dir_fd = TRY(internal::OpenDir(dir));
  std::string tmp_base = tmp.substr(dir.size() + 1);
  if (exists) {
    // Swap atomically: readers see the old or the new template, never neither.
    TRY(Syscall("exchange " + tmp + " with " + final_path, [&] {
      return ::renameat2(dir_fd.get(), tmp_base.c_str(), dir_fd.get(), name.c_str(),
                         RENAME_EXCHANGE);
    }));
    // tmp now holds the old template; the scope guard deletes it.
  } else {
    TRY(Syscall("rename " + tmp + " to " + final_path, [&] {
      return ::renameat2(dir_fd.get(), tmp_base.c_str(), dir_fd.get(), name.c_str(),
                         RENAME_NOREPLACE);
    }));
    cleanup.Dismiss();
  }
  ::fsync(dir_fd.get());
  Log(LogLevel::kInfo, "template built", {{"template", name}, {"built_from", info.built_from}});
  return info;
}

Result<TemplateInfo> ReadTemplateInfo(const Layout& layout, const std::string& name) {
  TRY(ValidateName(name, "template"));
  std::string path = layout.TemplateDir(name) + "/template.json";
  auto text = ReadFile(path, 1u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) {
      return Err(Error("template " + name + " does not exist (no " + path + ")", ENOENT));
    }
    return Err(std::move(text).error());
  }
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Err(Error(path + ": not a JSON object", EINVAL));
  TemplateInfo info;
  auto str = [&](const char* field, std::string* out, bool required) -> Status {
    auto it = doc.find(field);
    if (it == doc.end()) {
      if (required) return Err(Error(path + ": missing field \"" + field + "\"", EINVAL));
      return Ok();
    }
    if (!it->is_string()) return Err(Error(path + ": field \"" + field + "\": expected a string", EINVAL));
    *out = it->get<std::string>();
    return Ok();
  };
  auto format = doc.find("format");
  if (format != doc.end()) {
    if (!format->is_number_integer() || format->get<int>() != kTemplateFormat) {
      return Err(Error(path + ": field \"format\": unsupported (expected " +
                           std::to_string(kTemplateFormat) + ")",
                       EINVAL));
    }
  }
  TRY(str("name", &info.name, true));
  TRY(str("built_from", &info.built_from, true));
  TRY(str("created", &info.created, true));
  TRY(str("source", &info.source, false));
  if (info.name != name) {
    return Err(Error(path + ": field \"name\": \"" + info.name + "\" does not match the directory",
                     EINVAL));
  }
  auto binds = doc.find("host_ro_binds");
  if (binds != doc.end()) {
    if (!binds->is_array()) return Err(Error(path + ": field \"host_ro_binds\": expected an array", EINVAL));
    for (size_t i = 0; i < binds->size(); ++i) {
      const json& b = (*binds)[i];
      std::string field = "field \"host_ro_binds[" + std::to_string(i) + "]\"";
      if (!b.is_string()) return Err(Error(path + ": " + field + ": expected a string", EINVAL));
      std::string p = b.get<std::string>();
      if (p.empty() || p[0] != '/' || p.find("/..") != std::string::npos || p == "/") {
        return Err(Error(path + ": " + field + ": \"" + p + "\" is not an absolute host path below /",
                         EINVAL));
      }
      info.host_ro_binds.push_back(std::move(p));
    }
  }
  return info;
}

Result<std::vector<TemplateInfo>> ListTemplates(const Layout& layout) {
  std::string dir = TemplatesDir(layout);
  std::vector<std::string> names;
  {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
      if (errno == ENOENT) return std::vector<TemplateInfo>{};
      return Err(Error::FromErrno("opendir " + dir));
    }
    while (struct dirent* ent = ::readdir(d.get())) {
      std::string n = ent->d_name;
      if (n.empty() || n[0] == '.') continue;  // builds in progress, locks
      if (!IsValidName(n)) continue;
      names.push_back(n);
    }
  }
  std::sort(names.begin(), names.end());
  std::vector<TemplateInfo> out;
  for (const auto& n : names) out.push_back(TRY(ReadTemplateInfo(layout, n)));
  return out;
}

Status RemoveTemplate(const Layout& layout, const std::string& name) {
  TRY(ValidateName(name, "template"));
  std::string dir = TemplatesDir(layout);
  std::string path = layout.TemplateDir(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Err(Error("template " + name + " does not exist", ENOENT));
    return Err(Error::FromErrno("stat " + path));
  }
  UniqueFd lock = TRY(LockTemplate(layout, name));
  // A running qube's root is a generation of it: never pulled from under it.
  TRY(internal::CheckTemplateUnused(layout, name, "remove"));
  // Rename aside first so the name disappears atomically; the hidden .old-
  // directory is deleted now, or by the next build of this name if we die.
  std::string aside = dir + "/." + name + ".old-XXXXXX";
  if (::mkdtemp(aside.data()) == nullptr) return Err(Error::FromErrno("mkdtemp in " + dir));
  UniqueFd dir_fd = TRY(internal::OpenDir(dir));
  std::string aside_base = aside.substr(dir.size() + 1);
  auto swapped = Syscall("move " + path + " aside", [&] {
    return ::renameat2(dir_fd.get(), name.c_str(), dir_fd.get(), aside_base.c_str(),
                       RENAME_EXCHANGE);
  });
  if (!swapped) {
    ::rmdir(aside.c_str());
    return Err(std::move(swapped).error());
  }
  // `name` is now the empty placeholder directory; `aside` holds the template.
  TRY(Syscall("rmdir " + path, [&] { return ::unlinkat(dir_fd.get(), name.c_str(), AT_REMOVEDIR); }));
  TRY_CTX(RemoveTree(aside), "remove template " + name);
  return Ok();
}

}  // namespace tessera::storage
