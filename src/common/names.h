#pragma once
// Names of qubes and templates: the one rule every module checks them against.
// They become path components (S/qubes/<name>), hostnames, cgroup names and
// policy tokens, so this is also the gate against "../x" and control bytes.
//
//   TRY(ValidateName(name));                  // "qube name '1x' must start with a letter"
//   TRY(ValidateName(tmpl, "template"));
//   if (!IsValidName(entry)) continue;        // skip foreign directory entries

#include <cstddef>
#include <string_view>

#include "common/error.h"

namespace tessera {

inline constexpr size_t kMaxNameLength = 31;

// ^[a-zA-Z][a-zA-Z0-9_.-]*$, at most kMaxNameLength characters. On failure an
// EINVAL error naming `what` ("qube", "template", ...), the name (quoted,
// escaped, cut when long) and the broken rule.
Status ValidateName(std::string_view name, std::string_view what = "qube");

bool IsValidName(std::string_view name);

// Who a command runs as in a qube: a user name as useradd takes it
// ([a-z_][a-z0-9_-]*, at most 32 characters) or UID[:GID] (0..65535).
bool IsUserSpec(std::string_view user);

// The Nix store every Nix-built template comes from.
inline constexpr std::string_view kNixStoreDir = "/nix/store";

// A top-level Nix store path: "/nix/store/" + 32 characters of Nix's base32
// (0-9, a-z without e, o, u, t) + "-" + a name of [A-Za-z0-9+._?=-] not
// starting with '.', at most 211 characters; nothing below it. These become
// mount points and file names, so this is the gate for them.
bool IsStorePath(std::string_view path);

}  // namespace tessera
