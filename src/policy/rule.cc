#include "policy/rule.h"

#include <algorithm>
#include <array>
#include <set>
#include <span>

namespace tessera::policy {
namespace {

// Python's str.isspace() for ASCII (str.split()/strip() use it).
constexpr bool IsAsciiSpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

// Python's str.isspace() for ASCII, as a table (the parser asks per character).
constexpr auto kAsciiSpace = [] {
  std::array<bool, 128> t{};
  for (int c = 0; c < 128; ++c) t[static_cast<size_t>(c)] = IsAsciiSpace(static_cast<char>(c));
  return t;
}();

// Length of the whitespace character (Python's str.isspace()) that starts at
// `s[i]`, written in UTF-8, or 0. Beyond ASCII: U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
constexpr size_t SpaceAt(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) [[likely]]
    return kAsciiSpace[c] ? 1 : 0;
  const size_t left = s.size() - i;
  if (c == 0xC2 && left >= 2) return (b(i + 1) == 0x85 || b(i + 1) == 0xA0) ? 2 : 0;
  if (left < 3) return 0;
  const unsigned c1 = b(i + 1), c2 = b(i + 2);
  if (c == 0xE1) return (c1 == 0x9A && c2 == 0x80) ? 3 : 0;
  if (c == 0xE2 && c1 == 0x80) {
    return (c2 <= 0x8A && c2 >= 0x80) || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF ? 3 : 0;
  }
  if (c == 0xE2) return (c1 == 0x81 && c2 == 0x9F) ? 3 : 0;
  if (c == 0xE3) return (c1 == 0x80 && c2 == 0x80) ? 3 : 0;
  return 0;
}

// Length of the whitespace character that ends `s`, or 0.
constexpr size_t SpaceAtEnd(std::string_view s) {
  for (size_t len = 1; len <= 3 && len <= s.size(); ++len) {
    if (SpaceAt(s, s.size() - len) == len) return len;
  }
  return 0;
}

bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

// "'+', '/'": the offending characters, sorted and unique, each quoted.
std::string InvalidChars(std::string_view s, bool plus_allowed) {
  std::set<char> bad;
  for (char c : s) {
    if (!IsRpcNameChar(c) || (!plus_allowed && c == '+')) bad.insert(c);
  }
  std::string out;
  for (char c : bad) {
    if (!out.empty()) out += ", ";
    out += std::string("'") + c + "'";
  }
  return out;
}

// The error for a token in the v4 '$' spelling ("$anyvm", "$tag:x"), or "".
// Old-syntax files reach MakeRule with '$' already turned into '@'.
std::string V4Keyword(std::string_view token) {
  if (!token.starts_with('$')) return {};
  std::string v5(token);
  v5[0] = '@';
  return "'" + std::string(token) + "' is Qubes policy v4 syntax; in a v5 policy file write '" +
         v5 + "'";
}

tl::unexpected<std::string> Fail(std::string message) {
  return tl::unexpected<std::string>(std::move(message));
}

// Builds the rule from already split columns; shared by both syntaxes.
tl::expected<Rule, std::string> MakeRule(std::string_view service, std::string_view argument,
                                         std::string_view source, std::string_view target,
                                         std::string_view action,
                                         std::span<const std::string_view> params) {
  Rule rule;
  if (auto ok = ValidateServiceArgument(service, argument, rule.service, rule.argument); !ok) {
    return tl::unexpected(ok.error());
  }
  // Qubes policy v4 spelled keywords with '$' ("$anyvm"); in a v5 file that
  // would silently be a qube name no qube can have.
  for (std::string_view token : {source, target}) {
    if (auto v4 = V4Keyword(token); !v4.empty()) return Fail(v4);
  }
  auto src = ParseToken(source, TokenContext::kSource);
  if (!src) return tl::unexpected(src.error());
  rule.source = std::move(*src);
  auto tgt = ParseToken(target, TokenContext::kTarget);
  if (!tgt) return tl::unexpected(tgt.error());
  rule.target = std::move(*tgt);

  if (action == "allow") {
    rule.action = Action::kAllow;
  } else if (action == "deny") {
    rule.action = Action::kDeny;
  } else if (action == "ask") {
    rule.action = Action::kAsk;
  } else {
    return Fail("invalid action: " + std::string(action));
  }

  // key=value pairs: syntax and duplicates first, then booleans, then which
  // keys the action takes, then the redirect tokens (the reference's order).
  struct Param {
    std::string_view key, value;
  };
  std::vector<Param> kv;
  for (std::string_view p : params) {
    const size_t eq = p.find('=');
    if (eq == std::string_view::npos) {
      return Fail("invalid action parameter syntax: '" + std::string(p) + "'");
    }
    Param param{p.substr(0, eq), p.substr(eq + 1)};
    for (const auto& seen : kv) {
      if (seen.key == param.key)
        return Fail("parameter given twice: '" + std::string(param.key) + "'");
    }
    kv.push_back(param);
  }
  std::optional<bool> notify, autostart;
  for (const auto& p : kv) {
    if (p.key != "notify" && p.key != "autostart") continue;
    if (p.value != "yes" && p.value != "no") {
      return Fail("'" + std::string(p.key) + "' is '" + std::string(p.value) +
                  "', but can be only 'yes' or 'no'");
    }
    (p.key == "notify" ? notify : autostart) = p.value == "yes";
  }
  for (const auto& p : kv) {
    bool ok = p.key == "notify";
    if (rule.action != Action::kDeny) {
      ok = ok || p.key == "target" || p.key == "user" || p.key == "autostart";
    }
    if (rule.action == Action::kAsk) ok = ok || p.key == "default_target";
    if (!ok) {
      std::string_view takes = rule.action == Action::kDeny ? "notify="
                               : rule.action == Action::kAllow
                                   ? "target=, user=, autostart=, notify="
                                   : "target=, default_target=, user=, "
                                     "autostart=, notify=";
      return Fail("invalid parameter " + std::string(p.key) + "=" + std::string(p.value) +
                  " for action " + std::string(ActionName(rule.action)) + " (it takes " +
                  std::string(takes) + ")");
    }
  }
  for (const auto& p : kv) {
    if (p.key == "target" || p.key == "default_target") {
      if (auto v4 = V4Keyword(p.value); !v4.empty()) return Fail(v4);
      auto tok = ParseToken(p.value, TokenContext::kRedirect);
      if (!tok) return tl::unexpected(tok.error());
      (p.key == "target" ? rule.redirect : rule.default_target) = std::move(*tok);
    } else if (p.key == "user") {
      rule.user = std::string(p.value);
    }
  }
  rule.notify = notify.value_or(rule.action == Action::kDeny);
  rule.autostart = autostart.value_or(true);

  if (rule.target.cls == TokenClass::kDefault && rule.action == Action::kAllow && !rule.redirect) {
    return Fail("allow action for @default rule must specify target= option");
  }
  return rule;
}

}  // namespace

std::string_view ActionName(Action action) {
  switch (action) {
    case Action::kAllow:
      return "allow";
    case Action::kDeny:
      return "deny";
    case Action::kAsk:
      return "ask";
  }
  return "?";
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> out;
  SplitFields(line, out);
  return out;
}

void SplitFields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  size_t i = 0;
  while (i < line.size()) {
    size_t n;
    while (i < line.size() && (n = SpaceAt(line, i)) != 0) i += n;
    const size_t start = i;
    while (i < line.size() && SpaceAt(line, i) == 0) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
}

std::string_view StripSpace(std::string_view s) {
  size_t n;
  while (!s.empty() && (n = SpaceAt(s, 0)) != 0) s.remove_prefix(n);
  while (!s.empty() && (n = SpaceAtEnd(s)) != 0) s.remove_suffix(n);
  return s;
}

tl::expected<void, std::string> ValidateServiceArgument(std::string_view service,
                                                        std::string_view argument,
                                                        std::optional<std::string>& service_out,
                                                        std::optional<std::string>& argument_out) {
  service_out.reset();
  argument_out.reset();
  if (service != "*") {
    if (auto bad = InvalidChars(service, /*plus_allowed=*/false); !bad.empty()) {
      return Fail("service '" + std::string(service) + "' contains invalid characters: " + bad);
    }
    service_out = std::string(service);
  }
  if (argument != "*") {
    if (auto bad = InvalidChars(argument, /*plus_allowed=*/true); !bad.empty()) {
      return Fail("argument '" + std::string(argument) + "' contains invalid characters: " + bad);
    }
    if (!argument.starts_with('+')) {
      return Fail("argument '" + std::string(argument) + "' does not start with +");
    }
    if (!service_out) return Fail("only * argument allowed for * service");
    argument_out = std::string(argument);
  }
  return {};
}

tl::expected<Rule, std::string> ParseRule(std::string_view line) {
  // Reused between calls: parsing a big policy should not allocate per line.
  thread_local std::vector<std::string_view> f;
  SplitFields(line, f);
  if (f.size() < 5) return Fail("wrong number of fields");
  return MakeRule(f[0], f[1], f[2], f[3], f[4], std::span(f).subspan(5));
}

tl::expected<Rule, std::string> ParseServiceRule(std::string_view service,
                                                 std::string_view argument, std::string_view line) {
  const auto f = SplitFields(line);
  if (f.size() < 2) return Fail("wrong number of fields");
  // The action and its parameters may be separated by commas.
  std::vector<std::string_view> rest;
  for (size_t i = 2; i < f.size(); ++i) {
    std::string_view s = f[i];
    while (true) {
      const size_t comma = s.find(',');
      rest.push_back(s.substr(0, comma));
      if (comma == std::string_view::npos) break;
      s.remove_prefix(comma + 1);
    }
  }
  if (rest.empty()) return Fail("wrong number of fields");
  return MakeRule(service, argument, f[0], f[1], rest[0], std::span(rest).subspan(1));
}

std::string Rule::ToString() const {
  std::string s = service ? *service : "*";
  s += '\t';
  s += argument ? *argument : "*";
  s += '\t';
  s += source.text;
  s += '\t';
  s += target.text;
  s += '\t';
  s += ActionName(action);
  if (redirect) s += " target=" + redirect->text;
  if (default_target) s += " default_target=" + default_target->text;
  if (user && !user->empty()) s += " user=" + *user;
  return s;
}

}  // namespace tessera::policy
