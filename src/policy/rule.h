#pragma once
// One policy rule, and the parsers for its two spellings:
//   v5 line:            SERVICE ARGUMENT SOURCE TARGET ACTION [KEY=VALUE ...]
//   per-service line:   SOURCE TARGET ACTION[,KEY=VALUE...]   (!include-service, !compat-4.0)
//
//   auto rule = policy::ParseRule("qubes.Filecopy * @anyvm @anyvm ask");
//   if (!rule) std::cerr << rule.error();   // message without file:line
//
// Parsing is pure: no I/O, no knowledge of the system's qubes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "policy/token.h"

namespace tessera::policy {

enum class Action { kAllow, kDeny, kAsk };
std::string_view ActionName(Action action);

struct Rule {
  std::optional<std::string> service;   // nullopt = '*'
  std::optional<std::string> argument;  // nullopt = '*'; otherwise starts with '+'
  Token source;
  Token target;
  Action action = Action::kDeny;
  std::optional<Token> redirect;        // target=      (allow, ask)
  std::optional<Token> default_target;  // default_target= (ask)
  std::optional<std::string> user;      // user=        (allow, ask)
  bool notify = true;                   // notify=      default: deny yes, allow/ask no
  bool autostart = true;                // autostart=   (allow, ask)
  // Where the rule was read: index into Policy::files() and a 1-based line
  // (0 for the rules !compat-4.0 synthesizes).
  uint32_t file_index = 0;
  int line = 0;

  // Canonical tab-separated text, as the Qubes reference prints a rule
  // (notify/autostart are not printed), except that a '*' service prints as
  // "*" where the reference prints Python's "None".
  std::string ToString() const;
  bool operator==(const Rule&) const = default;
};

// Splits on runs of whitespace, as Python's str.split() does (ASCII and the
// Unicode spaces, in UTF-8); StripSpace is str.strip().
std::vector<std::string_view> SplitFields(std::string_view line);
void SplitFields(std::string_view line, std::vector<std::string_view>& out);
std::string_view StripSpace(std::string_view s);

// Checks the SERVICE and ARGUMENT columns ('*' becomes nullopt).
tl::expected<void, std::string> ValidateServiceArgument(std::string_view service,
                                                        std::string_view argument,
                                                        std::optional<std::string>& service_out,
                                                        std::optional<std::string>& argument_out);

// A v5 rule line (already stripped; not a comment or directive).
tl::expected<Rule, std::string> ParseRule(std::string_view line);
// A per-service (old syntax) line for SERVICE ARGUMENT ('*' allowed for both).
tl::expected<Rule, std::string> ParseServiceRule(std::string_view service,
                                                 std::string_view argument,
                                                 std::string_view line);

}  // namespace tessera::policy
