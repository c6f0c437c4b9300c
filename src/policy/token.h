#pragma once
// Qube tokens of the Qubes qrexec policy v5 language: what may stand in the
// SOURCE and TARGET columns, in `target=`/`default_target=` (a "redirect") and
// in the target a caller asks for (the "intended target").
//
//   policy::Token t = TRY_OR(policy::ParseToken("@tag:work", TokenContext::kSource));
//   t.cls == TokenClass::kTag, t.value() == "work"
//
// Which class is valid where (docs/POLICY.md, "Tokens"):
//   name, uuid:U, @adminvm ........ everywhere
//   *, @anyvm, @type:T, @tag:X .... source, target
//   @default ...................... target, intended target
//   @dispvm ....................... target, redirect, intended target
//   @dispvm:NAME .................. everywhere
//   @dispvm:@tag:X ................ source, target
// Literal names are not validated: a name that names no qube simply matches
// nothing.

#include <cstdint>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace tessera::policy {

enum class TokenClass {
  kName,            // a qube name or uuid:UUID
  kWildcard,        // *
  kAdminVm,         // @adminvm
  kAnyVm,           // @anyvm
  kDefault,         // @default
  kType,            // @type:T
  kTag,             // @tag:X
  kDispVm,          // @dispvm
  kDispVmTemplate,  // @dispvm:NAME
  kDispVmTag,       // @dispvm:@tag:X
};

enum class TokenContext { kSource, kTarget, kRedirect, kIntendedTarget };

struct Token {
  TokenClass cls = TokenClass::kName;
  std::string text;  // the token as written
  bool is_dom0 = false;      // IsDom0(text), computed once by ParseToken
  uint8_t prefix_size = 0;  // length of the class prefix ("@tag:" = 5)

  // The part after the class prefix ("work" for "@tag:work"); the whole text
  // for names and exact keywords.
  std::string_view value() const { return std::string_view(text).substr(prefix_size); }
  bool operator==(const Token&) const = default;
};

// The lower-case class name used in policy-cases.json and `explain`
// ("name", "wildcard", "dispvm_template", ...).
std::string_view TokenClassName(TokenClass cls);
std::string_view TokenContextName(TokenContext ctx);

// Parses one token for `ctx`; the error is a message without location.
tl::expected<Token, std::string> ParseToken(std::string_view text, TokenContext ctx);
// The class ParseToken would give, without building a Token (no allocation
// unless it fails).
tl::expected<TokenClass, std::string> ClassifyToken(std::string_view text, TokenContext ctx);
// Length of the class prefix of `cls` ("@tag:" = 5; 0 for names and keywords).
size_t TokenPrefixSize(TokenClass cls);

// dom0 has three spellings: dom0, @adminvm and uuid:00000000-0000-0000-0000-000000000000.
inline constexpr std::string_view kDom0Uuid = "00000000-0000-0000-0000-000000000000";
bool IsDom0(std::string_view token);

}  // namespace tessera::policy
