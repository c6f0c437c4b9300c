#include "wire/filecopy.h"

#include <cerrno>

namespace tessera::wire {
namespace {

void Put32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Put64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t Get(std::string_view b, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(b[off + static_cast<size_t>(i)]))
         << (8 * i);
  }
  return v;
}

Status Refuse(std::string message) { return Err(Error("filecopy: " + std::move(message), EINVAL)); }

bool HasControl(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

}  // namespace

std::string EncodeFilecopyHeader(const FilecopyHeader& h) {
  std::string out;
  out.reserve(kFilecopyHeaderSize);
  out.push_back(static_cast<char>(h.type));
  out.append(3, '\0');
  Put32(out, h.name_len);
  Put32(out, h.mode);
  Put32(out, h.mtime_nsec);
  Put64(out, h.mtime_sec);
  Put64(out, h.size);
  return out;
}

Result<FilecopyHeader> ParseFilecopyHeader(std::string_view b) {
  if (b.size() != kFilecopyHeaderSize) return Err(Error("filecopy: short header", EINVAL));
  FilecopyHeader h;
  auto type = static_cast<unsigned char>(b[0]);
  if (type != 'D' && type != 'F' && type != 'L' && type != 'E') {
    return Err(Error("filecopy: entry of unknown type " + std::to_string(type) +
                         " (only directories, regular files and symlinks are copied)",
                     EINVAL));
  }
  h.type = static_cast<FilecopyType>(type);
  if (b[1] != 0 || b[2] != 0 || b[3] != 0)
    return Err(Error("filecopy: reserved bytes set", EINVAL));
  h.name_len = static_cast<uint32_t>(Get(b, 4, 4));
  h.mode = static_cast<uint32_t>(Get(b, 8, 4));
  h.mtime_nsec = static_cast<uint32_t>(Get(b, 12, 4));
  h.mtime_sec = Get(b, 16, 8);
  h.size = Get(b, 24, 8);
  if (h.mtime_nsec >= 1000000000u) return Err(Error("filecopy: bad mtime", EINVAL));
  if (h.mtime_sec > (uint64_t{1} << 40)) return Err(Error("filecopy: bad mtime", EINVAL));
  if (h.type == FilecopyType::kEnd) {
    if (h.name_len != 0 || h.size != 0) return Err(Error("filecopy: bad end record", EINVAL));
    return h;
  }
  if (h.name_len == 0 || h.name_len > kMaxFilecopyPath) {
    return Err(Error("filecopy: name length " + std::to_string(h.name_len), EINVAL));
  }
  if (h.type == FilecopyType::kDir && h.size != 0) {
    return Err(Error("filecopy: a directory with content", EINVAL));
  }
  if (h.type == FilecopyType::kSymlink && (h.size == 0 || h.size > kMaxFilecopyPath)) {
    return Err(Error("filecopy: symlink target length " + std::to_string(h.size), EINVAL));
  }
  return h;
}

Status CheckFilecopyName(std::string_view name) {
  if (name.empty() || name.size() > kMaxFilecopyPath) return Refuse("empty or overlong name");
  if (name.front() == '/') return Refuse("absolute path: " + std::string(name.substr(0, 64)));
  if (HasControl(name)) return Refuse("control character in a name");
  size_t start = 0;
  for (;;) {
    size_t slash = name.find('/', start);
    std::string_view part = name.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty()) return Refuse("empty path component in " + std::string(name.substr(0, 64)));
    if (part == "." || part == "..") {
      return Refuse("'" + std::string(part) + "' in " + std::string(name.substr(0, 64)));
    }
    if (part.size() > kMaxFilecopyComponent) return Refuse("path component too long");
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Ok();
}

Status CheckFilecopySymlink(std::string_view name, std::string_view target) {
  if (target.empty() || target.size() > kMaxFilecopyPath) return Refuse("bad symlink target");
  if (target.front() == '/') return Refuse("symlink to an absolute path: " + std::string(name));
  if (HasControl(target)) return Refuse("control character in a symlink target");
  // "../" may only lead the target, at most as often as the link's
  // directory is deep; then only plain names follow (no "." or "..", which
  // through another symlink could climb further than they seem to).
  int depth = 0;
  for (char c : name) depth += c == '/' ? 1 : 0;
  bool climbing = true;
  size_t start = 0;
  for (;;) {
    size_t slash = target.find('/', start);
    std::string_view part = target.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part == ".." && climbing) {
      if (--depth < 0) return Refuse("symlink leaving the copied tree: " + std::string(name));
    } else if (part.empty() || part == "." || part == "..") {
      return Refuse("symlink target with '" + std::string(part) +
                    "' past its start: " + std::string(name));
    } else {
      climbing = false;
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Ok();
}

}  // namespace tessera::wire
