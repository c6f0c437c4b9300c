#pragma once
// Syntax of single values in the system description: qube names, tags, firewall
// destinations and ports, UUIDs. Pure functions; each returns the normalised
// value or an Error whose message says what was expected.
//
//   std::string host = TRY(NormaliseDstHost("10.0.0.0/8"));   // "10.0.0.0/8"
//   PortRange ports = TRY(ParsePortRange("1024-2048"));
//   std::string id = DeriveUuid("work");                      // stable UUIDv5

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.h"
#include "config/model.h"

namespace tessera::config {

// Qubes rules: the name syntax of common/names.h (ValidateName), not reserved
// ("none", "default", "dom0", "Domain-0" in any case, "disp<digits>" which names
// generated disposables, or ending in "-dm").
Status CheckQubeName(std::string_view name);

// Qubes tag syntax: ^[a-zA-Z0-9_-]+$ (at most 64 characters).
Status CheckTag(std::string_view tag);

// Feature names: ^[a-zA-Z0-9_.-]+$ (at most 128 characters).
Status CheckFeatureName(std::string_view name);

// Firewall dsthost: an IPv4/IPv6 address, a CIDR network (host bits must be zero)
// or a DNS name ([a-z0-9._-], lower-cased). Returns the normalised form: networks
// and addresses always carry a prefix ("192.168.1.1/32"), IPv6 in RFC 5952 form.
Result<std::string> NormaliseDstHost(std::string_view text);

// One IPv4 address in dotted-quad form ("192.0.2.1"), returned normalised.
Result<std::string> NormaliseIpv4Address(std::string_view text);
// An IPv4 network "A.B.C.D/N" whose host bits are zero (network_range),
// prefix at least `min_prefix` and at most `max_prefix`.
Result<std::string> NormaliseIpv4Network(std::string_view text, int min_prefix, int max_prefix);
// An IPv4 interface address with its prefix ("192.0.2.2/24"; host bits
// allowed), prefix 1..32.
Result<std::string> NormaliseIpv4Interface(std::string_view text);
// A network interface name: 1..15 letters, digits, '_', '-' or '.', not
// "." or ".." (stricter than the kernel: the name goes into nft scripts).
Status CheckIfname(std::string_view name);
// "N" or "N-M" with 0 <= N <= M <= 65535.
Result<PortRange> ParsePortRange(std::string_view text);
std::string FormatPortRange(const PortRange& range);

// RFC 4122 text form (8-4-4-4-12 hex digits), returned lower-cased.
Result<std::string> NormaliseUuid(std::string_view text);

// The name-based UUID (version 5, SHA-1) of `name` in the tessera namespace
// 43b394f7-1606-40c2-9213-a1bbcd96107e: the same name always gives the same UUID
// (python: uuid.uuid5(UUID("43b394f7-..."), name)).
std::string DeriveUuid(std::string_view name);

}  // namespace tessera::config
