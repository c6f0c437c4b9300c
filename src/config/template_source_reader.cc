#include "config/template_source_reader.h"

#include <array>
#include <string_view>

#include "common/names.h"

namespace tessera::config {
namespace {

constexpr std::string_view kSources[] = {"busybox", "debootstrap", "host", "dir:", "nix"};
constexpr std::string_view kNixKeys[] = {"closure", "image", "root"};

}  // namespace

std::optional<std::string> TemplateSourceReader::ReadSource(const Node& value,
                                                            const std::string& path) {
  std::optional<std::string> text = GetString(value, path);
  if (!text) return std::nullopt;
  if (text->rfind("dir:", 0) == 0) {
    if (!IsAbsoluteWithoutDotDot(text->substr(4))) {
      Report(value.location, path,
             "source " + QuoteValue(*text) + ": dir: needs an absolute path without '..'");
      return std::nullopt;
    }
  } else if (*text != "busybox" && *text != "debootstrap" && *text != "host" && *text != "nix") {
    Report(value.location, path,
           "invalid source " + QuoteValue(*text) +
               " (expected busybox, debootstrap, host, dir:/absolute/path or nix)" +
               DidYouMean(*text, kSources));
    return std::nullopt;
  }
  return text;
}

std::optional<NixTemplate> TemplateSourceReader::ReadNix(const Node& value,
                                                         const std::string& path) {
  if (!ExpectKind(value, Node::Kind::kTable, path, "a table { root, closure, image }")) {
    return std::nullopt;
  }
  NixTemplate nix;
  bool valid = true;
  bool root_given = false;
  bool closure_given = false;
  for (const Member* member : UniqueMembers(value, path)) {
    const std::string field = JoinPath(path, member->key);
    const Node& v = member->value;
    if (member->key == "root") {
      root_given = true;
      auto text = GetString(v, field);
      if (text && !IsStorePath(*text)) {
        Report(v.location, field,
               "root " + QuoteValue(*text) + ": expected a store path /nix/store/<hash>-<name>");
        text.reset();
      }
      if (text) nix.root = *text;
      valid = valid && text.has_value();
    } else if (member->key == "closure") {
      closure_given = true;
      auto text = GetString(v, field);
      if (text && !IsAbsoluteWithoutDotDot(*text)) {
        Report(v.location, field,
               "closure " + QuoteValue(*text) +
                   ": expected the absolute path of a file listing store paths");
        text.reset();
      }
      if (text) nix.closure = *text;
      valid = valid && text.has_value();
    } else if (member->key == "image") {
      auto text = GetChoice(v, field, std::array<std::string_view, 3>{"erofs", "squashfs", "none"});
      if (text) nix.image = *text;
      valid = valid && text.has_value();
    } else {
      UnknownKey(*member, path, kNixKeys);
      valid = false;
    }
  }
  if (!root_given) Report(value.location, path, "nix: root is required");
  if (!closure_given) Report(value.location, path, "nix: closure is required");
  if (!valid || !root_given || !closure_given) return std::nullopt;
  return nix;
}

}  // namespace tessera::config
