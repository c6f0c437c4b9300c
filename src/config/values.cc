#include "config/values.h"

#include <arpa/inet.h>
#include <uuid/uuid.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstring>

#include "common/names.h"

namespace tessera::config {
namespace {

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) { return IsAsciiAlpha(c) || IsAsciiDigit(c); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Quotes a user value for a message, cutting very long ones.
std::string Quote(std::string_view s) {
  std::string out = "'";
  out += s.size() > 64 ? std::string(s.substr(0, 64)) + "..." : std::string(s);
  out += "'";
  return out;
}

// Strict decimal: digits only, no sign, no leading '+', bounded.
bool ParseDecimal(std::string_view s, uint64_t max, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (!IsAsciiDigit(c)) return false;
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value > max) return false;
  out = value;
  return true;
}

constexpr std::array<uint8_t, 16> kTesseraNamespace = {
    0x43, 0xb3, 0x94, 0xf7, 0x16, 0x06, 0x40, 0xc2,
    0x92, 0x13, 0xa1, 0xbb, 0xcd, 0x96, 0x10, 0x7e};

Result<std::string> NormaliseIpv4(std::string_view address, std::string_view prefix_text,
                                  bool has_prefix, std::string_view original) {
  std::string addr(address);
  in_addr parsed{};
  if (inet_pton(AF_INET, addr.c_str(), &parsed) != 1) {
    return Err("invalid IPv4 address " + Quote(address));
  }
  uint64_t prefix = 32;
  if (has_prefix && !ParseDecimal(prefix_text, 32, prefix)) {
    return Err("invalid IPv4 prefix length " + Quote(prefix_text) + " (expected 0-32)");
  }
  uint32_t host = ntohl(parsed.s_addr);
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  if ((host & ~mask) != 0) {
    in_addr network{};
    network.s_addr = htonl(host & mask);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &network, buf, sizeof buf);
    return Err(Quote(original) + " has host bits set; did you mean " + buf + "/" +
               std::to_string(prefix) + "?");
  }
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &parsed, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

Result<std::string> NormaliseIpv6(std::string_view address, std::string_view prefix_text,
                                  bool has_prefix, std::string_view original) {
  std::string addr(address);
  in6_addr parsed{};
  if (inet_pton(AF_INET6, addr.c_str(), &parsed) != 1) {
    return Err("invalid IPv6 address " + Quote(address));
  }
  uint64_t prefix = 128;
  if (has_prefix && !ParseDecimal(prefix_text, 128, prefix)) {
    return Err("invalid IPv6 prefix length " + Quote(prefix_text) + " (expected 0-128)");
  }
  in6_addr network = parsed;
  for (size_t i = 0; i < 16; ++i) {
    size_t bits_before = i * 8;
    uint8_t keep;
    if (bits_before + 8 <= prefix) {
      keep = 0xff;
    } else if (bits_before >= prefix) {
      keep = 0;
    } else {
      keep = static_cast<uint8_t>(0xff << (8 - (prefix - bits_before)));
    }
    network.s6_addr[i] = static_cast<uint8_t>(network.s6_addr[i] & keep);
  }
  char buf[INET6_ADDRSTRLEN];
  if (std::memcmp(&network, &parsed, sizeof network) != 0) {
    inet_ntop(AF_INET6, &network, buf, sizeof buf);
    return Err(Quote(original) + " has host bits set; did you mean " + buf + "/" +
               std::to_string(prefix) + "?");
  }
  inet_ntop(AF_INET6, &parsed, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

}  // namespace

Status CheckQubeName(std::string_view name) {
  // The syntax is every module's (common/names.h); the reserved names are
  // the description's own rule.
  if (Status syntax = ValidateName(name, "qube"); !syntax) {
    return Err(Error(std::move(syntax).error().message()));
  }
  std::string lower = Lower(name);
  if (lower == "none" || lower == "default" || lower == "dom0" || lower == "domain-0") {
    return Err("qube name " + Quote(name) + " is reserved");
  }
  if (lower.size() > 4 && lower.compare(0, 4, "disp") == 0 &&
      std::all_of(lower.begin() + 4, lower.end(), IsAsciiDigit)) {
    return Err("qube name " + Quote(name) +
               " is reserved: disp<number> names generated disposables");
  }
  if (lower.size() >= 3 && lower.compare(lower.size() - 3, 3, "-dm") == 0) {
    return Err("qube name " + Quote(name) + " is reserved: names ending in -dm are "
               "reserved (as in Qubes)");
  }
  return Ok();
}

Status CheckTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 64) return Err("a tag must have 1-64 characters");
  for (char c : tag) {
    if (!IsAsciiAlnum(c) && c != '_' && c != '-') {
      return Err("tag " + Quote(tag) + " may contain only letters, digits, '_' and '-'");
    }
  }
  return Ok();
}

Status CheckFeatureName(std::string_view name) {
  if (name.empty() || name.size() > 128) return Err("a feature name must have 1-128 characters");
  for (char c : name) {
    if (!IsAsciiAlnum(c) && c != '_' && c != '.' && c != '-') {
      return Err("feature name " + Quote(name) +
                 " may contain only letters, digits, '_', '.' and '-'");
    }
  }
  return Ok();
}

Result<std::string> NormaliseDstHost(std::string_view text) {
  if (text.empty()) return Err("dsthost must not be empty (leave it out to match any host)");
  if (text.size() > 253) return Err("dsthost is longer than 253 characters");
  size_t slash = text.find('/');
  bool has_prefix = slash != std::string_view::npos;
  std::string_view address = text.substr(0, slash);
  std::string_view prefix = has_prefix ? text.substr(slash + 1) : std::string_view();
  if (address.find(':') != std::string_view::npos) {
    return NormaliseIpv6(address, prefix, has_prefix, text);
  }
  bool ipv4_like = !address.empty() && std::all_of(address.begin(), address.end(), [](char c) {
    return IsAsciiDigit(c) || c == '.';
  });
  if (ipv4_like || has_prefix) return NormaliseIpv4(address, prefix, has_prefix, text);
  // A DNS name.
  std::string host = Lower(text);
  if (host.front() == '.' || host.front() == '-') {
    return Err("invalid host name " + Quote(text) + " (must start with a letter or digit)");
  }
  if (host.find("..") != std::string::npos) {
    return Err("invalid host name " + Quote(text) + " (empty label)");
  }
  for (char c : host) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '_' && c != '-') {
      return Err("invalid dsthost " + Quote(text) +
                 ": expected an IP address, a CIDR network or a host name "
                 "of letters, digits, '.', '_' and '-'");
    }
  }
  return host;
}

Result<std::string> NormaliseIpv4Address(std::string_view text) {
  std::string addr(text);
  in_addr parsed{};
  if (text.find('/') != std::string_view::npos || inet_pton(AF_INET, addr.c_str(), &parsed) != 1) {
    return Err("invalid IPv4 address " + Quote(text) + " (expected A.B.C.D)");
  }
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &parsed, buf, sizeof buf);
  return std::string(buf);
}

Result<std::string> NormaliseIpv4Network(std::string_view text, int min_prefix, int max_prefix) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Err("invalid network " + Quote(text) + " (expected A.B.C.D/N)");
  }
  std::string network =
      TRY(NormaliseIpv4(text.substr(0, slash), text.substr(slash + 1), true, text));
  int prefix = std::stoi(network.substr(network.find('/') + 1));
  if (prefix < min_prefix || prefix > max_prefix) {
    return Err("network " + Quote(text) + " must have a prefix length from /" +
               std::to_string(min_prefix) + " to /" + std::to_string(max_prefix));
  }
  return network;
}

Result<std::string> NormaliseIpv4Interface(std::string_view text) {
  size_t slash = text.find('/');
  uint64_t prefix = 0;
  if (slash == std::string_view::npos || !ParseDecimal(text.substr(slash + 1), 32, prefix) ||
      prefix == 0) {
    return Err("invalid interface address " + Quote(text) +
               " (expected A.B.C.D/N with N from 1 to 32)");
  }
  std::string address = TRY(NormaliseIpv4Address(text.substr(0, slash)));
  return address + "/" + std::to_string(prefix);
}

Status CheckIfname(std::string_view name) {
  bool bad_char = std::any_of(name.begin(), name.end(), [](char c) {
    return !IsAsciiAlnum(c) && c != '_' && c != '-' && c != '.';
  });
  if (name.empty() || name.size() > 15 || name == "." || name == ".." || bad_char) {
    return Err("invalid interface name " + Quote(name) +
               " (1 to 15 letters, digits, '_', '-' or '.')");
  }
  return {};
}

Result<PortRange> ParsePortRange(std::string_view text) {
  auto fail = [&] {
    return Err("invalid port range " + Quote(text) + " (expected N or N-M, 0-65535, N <= M)");
  };
  size_t dash = text.find('-');
  uint64_t first = 0;
  uint64_t last = 0;
  if (dash == std::string_view::npos) {
    if (!ParseDecimal(text, 65535, first)) return fail();
    last = first;
  } else {
    if (!ParseDecimal(text.substr(0, dash), 65535, first) ||
        !ParseDecimal(text.substr(dash + 1), 65535, last)) {
      return fail();
    }
    if (first > last) {
      return Err("invalid port range " + Quote(text) + ": first port is above the last");
    }
  }
  return PortRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

std::string FormatPortRange(const PortRange& range) {
  if (range.first == range.last) return std::to_string(range.first);
  return std::to_string(range.first) + "-" + std::to_string(range.last);
}

Result<std::string> NormaliseUuid(std::string_view text) {
  static constexpr size_t kDashes[] = {8, 13, 18, 23};
  bool ok = text.size() == 36;
  for (size_t i = 0; ok && i < text.size(); ++i) {
    bool dash_here = std::find(std::begin(kDashes), std::end(kDashes), i) != std::end(kDashes);
    ok = dash_here ? text[i] == '-' : std::isxdigit(static_cast<unsigned char>(text[i])) != 0;
  }
  if (!ok) {
    return Err("invalid uuid " + Quote(text) +
               " (expected 8-4-4-4-12 hex digits, e.g. 1361ba56-f2b5-5664-b47a-960c7df9fefd)");
  }
  return Lower(text);
}

std::string DeriveUuid(std::string_view name) {
  // RFC 4122 name-based, SHA-1 (version 5): libuuid does the hashing and
  // sets the version and variant bits.
  uuid_t uuid;
  uuid_generate_sha1(uuid, kTesseraNamespace.data(), name.data(), name.size());
  char text[37];
  uuid_unparse_lower(uuid, text);
  return text;
}

}  // namespace tessera::config
