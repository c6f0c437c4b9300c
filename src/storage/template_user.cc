// The qube's normal user in a template tree: `user`, uid/gid 1000, home
// /home/user, as Qubes templates have it and `tessera run` expects
// (default_user). Busybox and host templates are written with it; trees that
// come from elsewhere (debootstrap, a directory) get it appended.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "common/syscall.h"
#include "storage/internal.h"
#include "storage/template_internal.h"

namespace tessera::storage::internal {
namespace {

// Does a colon-separated database have an entry whose field `index` is `value`?
bool HasEntry(const std::string& text, size_t index, const std::string& value) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t start = 0;
    for (size_t i = 0; i < index && start != std::string::npos; ++i) {
      start = line.find(':', start);
      if (start != std::string::npos) ++start;
    }
    if (start == std::string::npos) continue;
    if (line.substr(start, line.find(':', start) - start) == value) return true;
  }
  return false;
}

Status AppendAt(int etc_fd, const char* name, const std::string& text, const std::string& path) {
  if (text.empty()) return Ok();
  // The tree may come from anywhere: never follow a link out of it.
  UniqueFd fd(TRY(Syscall("open " + path, [&] {
    return ::openat(etc_fd, name, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  })));
  TRY(SyscallSize("write " + path, [&] { return ::write(fd.get(), text.data(), text.size()); }));
  return Ok();
}

// Is `name` in etc something other than a missing or regular file (a link,
// which may point anywhere on the host from here)? Such a file is left alone.
bool Foreign(int etc_fd, const char* name) {
  struct stat st;
  return ::fstatat(etc_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode);
}

Result<std::string> ReadAt(int etc_fd, const char* name, const std::string& path) {
  UniqueFd fd(::openat(etc_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) return std::string();
    return Err(Error::FromErrno("open " + path));
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0 && text.size() < (4u << 20)) {
    text.append(buf, static_cast<size_t>(n));
  }
  if (n < 0) return Err(Error::FromErrno("read " + path));
  return text;
}

}  // namespace

QubeUserEntries MissingQubeUser(const std::string& passwd, const std::string& group,
                                const std::string& shadow) {
  QubeUserEntries add;
  // A tree that gave uid 1000 to someone else keeps it (default_user names
  // that user instead); never two names for one uid.
  if (HasEntry(passwd, 0, "user") || HasEntry(passwd, 2, "1000")) return add;
  add.passwd = "user:x:1000:1000:user:/home/user:/bin/sh\n";
  if (!HasEntry(group, 0, "user") && !HasEntry(group, 2, "1000")) add.group = "user:x:1000:\n";
  if (!HasEntry(shadow, 0, "user")) add.shadow = "user:*:1::::::\n";
  auto newline = [](const std::string& text, std::string* entry) {
    if (!entry->empty() && !text.empty() && text.back() != '\n') entry->insert(0, "\n");
  };
  newline(passwd, &add.passwd);
  newline(group, &add.group);
  newline(shadow, &add.shadow);
  return add;
}

Status EnsureQubeUser(int root_fd, const std::string& root_path) {
  std::string etc_path = root_path + "/etc";
  if (::mkdirat(root_fd, "etc", 0755) != 0 && errno != EEXIST) {
    return Err(Error::FromErrno("mkdir " + etc_path));
  }
  UniqueFd etc = TRY(OpenDirAt(root_fd, "etc", etc_path));
  if (Foreign(etc.get(), "passwd") || Foreign(etc.get(), "group") || Foreign(etc.get(), "shadow")) {
    return Ok();  // managed some other way (e.g. links into a NixOS /etc/static)
  }
  std::string passwd = TRY(ReadAt(etc.get(), "passwd", etc_path + "/passwd"));
  std::string group = TRY(ReadAt(etc.get(), "group", etc_path + "/group"));
  std::string shadow = TRY(ReadAt(etc.get(), "shadow", etc_path + "/shadow"));
  QubeUserEntries add = MissingQubeUser(passwd, group, shadow);
  if (passwd.empty()) {
    // No database at all: a fresh one (O_EXCL; mode as a distribution makes it).
    return WriteFileAt(etc.get(), "passwd", "root:x:0:0:root:/root:/bin/sh\n" + add.passwd, 0644,
                       etc_path + "/passwd");
  }
  TRY(AppendAt(etc.get(), "passwd", add.passwd, etc_path + "/passwd"));
  if (group.empty()) {
    TRY(WriteFileAt(etc.get(), "group", "root:x:0:\n" + add.group, 0644, etc_path + "/group"));
  } else {
    TRY(AppendAt(etc.get(), "group", add.group, etc_path + "/group"));
  }
  if (!shadow.empty()) TRY(AppendAt(etc.get(), "shadow", add.shadow, etc_path + "/shadow"));
  return Ok();
}

}  // namespace tessera::storage::internal
