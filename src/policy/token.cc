#include "policy/token.h"

#include <array>

namespace tessera::policy {
namespace {

// Bit per context in which a class may appear.
constexpr unsigned Bit(TokenContext ctx) { return 1u << static_cast<unsigned>(ctx); }
constexpr unsigned kSrc = Bit(TokenContext::kSource);
constexpr unsigned kTgt = Bit(TokenContext::kTarget);
constexpr unsigned kRed = Bit(TokenContext::kRedirect);
constexpr unsigned kInt = Bit(TokenContext::kIntendedTarget);

struct Exact {
  std::string_view text;
  TokenClass cls;
  unsigned contexts;
};
constexpr std::array<Exact, 5> kExacts = {{
    {"*", TokenClass::kWildcard, kSrc | kTgt},
    {"@adminvm", TokenClass::kAdminVm, kSrc | kTgt | kRed | kInt},
    {"@anyvm", TokenClass::kAnyVm, kSrc | kTgt},
    {"@default", TokenClass::kDefault, kTgt | kInt},
    {"@dispvm", TokenClass::kDispVm, kTgt | kRed | kInt},
}};

struct Prefix {
  std::string_view prefix;
  TokenClass cls;
  unsigned contexts;
};
// Order matters: "@dispvm:" is tried before "@dispvm:@tag:"; a value that
// starts with '@' falls through to the longer prefix.
constexpr std::array<Prefix, 4> kPrefixes = {{
    {"@type:", TokenClass::kType, kSrc | kTgt},
    {"@tag:", TokenClass::kTag, kSrc | kTgt},
    {"@dispvm:", TokenClass::kDispVmTemplate, kSrc | kTgt | kRed | kInt},
    {"@dispvm:@tag:", TokenClass::kDispVmTag, kSrc | kTgt},
}};

}  // namespace

std::string_view TokenClassName(TokenClass cls) {
  switch (cls) {
    case TokenClass::kName: return "name";
    case TokenClass::kWildcard: return "wildcard";
    case TokenClass::kAdminVm: return "adminvm";
    case TokenClass::kAnyVm: return "anyvm";
    case TokenClass::kDefault: return "default";
    case TokenClass::kType: return "type";
    case TokenClass::kTag: return "tag";
    case TokenClass::kDispVm: return "dispvm";
    case TokenClass::kDispVmTemplate: return "dispvm_template";
    case TokenClass::kDispVmTag: return "dispvm_tag";
  }
  return "?";
}

std::string_view TokenContextName(TokenContext ctx) {
  switch (ctx) {
    case TokenContext::kSource: return "source";
    case TokenContext::kTarget: return "target";
    case TokenContext::kRedirect: return "redirect";
    case TokenContext::kIntendedTarget: return "intended target";
  }
  return "?";
}

tl::expected<TokenClass, std::string> ClassifyToken(std::string_view text, TokenContext ctx) {
  const unsigned bit = Bit(ctx);
  if (text.empty()) {
    return tl::unexpected("invalid empty " + std::string(TokenContextName(ctx)) + " token");
  }
  if (text[0] != '@' && text != "*") return TokenClass::kName;
  for (const auto& e : kExacts) {
    if ((e.contexts & bit) != 0 && text == e.text) return e.cls;
  }
  for (const auto& p : kPrefixes) {
    if ((p.contexts & bit) == 0 || !text.starts_with(p.prefix)) continue;
    std::string_view value = text.substr(p.prefix.size());
    if (value.empty()) {
      return tl::unexpected("invalid empty " + std::string(p.prefix) + " token: '" +
                            std::string(text) + "'");
    }
    if (value[0] == '@') continue;  // part of a longer prefix, or invalid
    return p.cls;
  }
  return tl::unexpected("invalid " + std::string(TokenContextName(ctx)) + " token: '" +
                        std::string(text) + "'");
}

size_t TokenPrefixSize(TokenClass cls) {
  for (const auto& p : kPrefixes) {
    if (p.cls == cls) return p.prefix.size();
  }
  return 0;
}

tl::expected<Token, std::string> ParseToken(std::string_view text, TokenContext ctx) {
  auto cls = ClassifyToken(text, ctx);
  if (!cls) return tl::unexpected(std::move(cls.error()));
  const bool dom0 = *cls == TokenClass::kAdminVm || (*cls == TokenClass::kName && IsDom0(text));
  return Token{*cls, std::string(text), dom0, static_cast<uint8_t>(TokenPrefixSize(*cls))};
}

bool IsDom0(std::string_view token) {
  if (token == "dom0" || token == "@adminvm") return true;
  return token.size() == 5 + kDom0Uuid.size() && token.starts_with("uuid:") &&
         token.substr(5) == kDom0Uuid;
}

}  // namespace tessera::policy
