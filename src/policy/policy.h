#pragma once
// A loaded qrexec policy (Qubes policy v5 semantics) and its evaluation.
//
//   policy::LoadSpec spec = policy::DirectorySpec({.policy_dir = "/etc/tessera/policy.d"});
//   auto loaded = policy::Policy::Load(policy::RealFileSystem(), spec);   // loader.h
//   if (!loaded) { for (auto& e : loaded.error()) std::cerr << e.ToString() << "\n"; }
//   policy::Resolution r = loaded->Evaluate(
//       {.service = "qubes.Filecopy", .argument = "+", .source = "work", .target = "vault"},
//       system);
//   if (r.decision == policy::Decision::kAllow) ...
//
// Loading reads every file through a PolicyFileSystem; a Policy never does
// I/O after that. Rules are indexed by service, so evaluation looks only at
// the rules for the requested service and the `*` service rules, in file order.
// A Policy is immutable once loaded and safe to share between threads.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tl/expected.hpp>

#include "policy/file_system.h"
#include "policy/rule.h"
#include "policy/system.h"
#include "policy/token.h"

namespace tessera::policy {

// The reference's error classes; kept so results can be compared with Qubes.
enum class ErrorKind {
  kSyntax,          // PolicySyntaxError: the policy text is wrong
  kAccessDenied,    // AccessDenied: denied (by a rule, or because nothing allowed it)
  kRequest,         // RequestError: the request itself is unacceptable (relay checks)
  kInvalidRequest,  // malformed request (argument not starting with '+')
};
std::string_view ErrorKindName(ErrorKind kind);  // "PolicySyntaxError", ...

// One problem found while loading. `line` is 0 when it concerns a whole file.
struct LoadError {
  ErrorKind kind = ErrorKind::kSyntax;
  std::string file;  // display name (see LoadSpec)
  int line = 0;
  std::string message;
  std::string path;  // the file's full path, when it is a real file ("" otherwise)
  // "FILE:LINE: message" with the display name
  std::string ToString() const;
  // "PATH:LINE: message" when the path is known (for editors), else ToString()
  std::string ToPathString() const;
};


struct Denial {
  ErrorKind kind = ErrorKind::kAccessDenied;
  std::string message;
  bool notify = true;
};

// A top-level policy directory. Display names of files under `path` are
// `display_prefix` + the path relative to it ("run:30-user.policy").
struct TopDir {
  std::string path;
  std::string display_prefix;
  // A missing optional directory (the runtime one) is skipped silently.
  bool optional = false;
};

struct LoadSpec {
  // Directories whose *.policy files form the policy, searched in order: a
  // basename found in an earlier one hides the same name in later ones. All
  // selected files are then read in basename order (C locale).
  std::vector<TopDir> dirs;
  // Instead of (or after) the directories: single entry files, read in
  // order, with relative !include paths resolved against `entry_base`.
  std::vector<std::string> entry_files;
  std::string entry_base;
  // Directory read by !compat-4.0 (the Qubes R4.0 per-service files).
  std::string compat_dir;
  // Display names for files outside `dirs` (e.g. compat files): prefix to strip.
  std::vector<TopDir> extra_display_roots;
  // Which Qubes loader the reading follows.
  enum class Flavor {
    // FilePolicy (files on disk): lines end at "\n", "\r\n" or a lone "\r"
    // (Python's universal newlines); any include path.
    kFilePolicy,
    // StringPolicy (in-memory): lines end at "\n" only; the path of !include
    // and !include-service (outside !compat-4.0), after removing "//" and "."
    // parts, must be a plain NAME or exactly include/NAME. ".." is not
    // collapsed, so "a/../x" is refused too. Anything else is a syntax error.
    kStringPolicy,
  };
  Flavor flavor = Flavor::kFilePolicy;
};

struct PolicyDirs {
  std::string policy_dir = "/etc/tessera/policy.d";
  std::string runtime_dir = "/run/tessera/policy.d";  // searched first, may be missing
  std::string compat_dir = "/etc/tessera/policy";     // !compat-4.0
};
LoadSpec DirectorySpec(const PolicyDirs& dirs);

// A request as the caller made it.
struct Request {
  std::string service;
  std::string argument = "+";  // starts with '+'; "+" = no argument
  std::string source;
  std::string target;            // "" = @default
  std::string requested_source;  // Qubes Air relay; "" = none
};

// A request after normalisation: unknown target names become @default,
// keyword targets are checked, a relay's claimed source is checked.
struct NormalizedRequest {
  std::string service;
  std::string argument;
  std::string source;
  std::string target;  // "@default", a qube name/uuid:, "@adminvm", "@dispvm", "@dispvm:NAME"
  TokenClass target_class = TokenClass::kDefault;
  std::string requested_source;
  std::string relayvm;
};
tl::expected<NormalizedRequest, Denial> NormalizeRequest(const Request& request,
                                                         const SystemInfo& system);
// Parses SERVICE[+ARG] into a Request's service and argument.
void SplitServiceArgument(std::string_view service_and_arg, Request& request);

enum class Decision { kAllow, kDeny, kAsk };
std::string_view DecisionName(Decision decision);
enum class Stage { kParse, kRequest, kEvaluate };
std::string_view StageName(Stage stage);

// Why a call is denied. Evaluation records only this (and the rule index);
// Policy::Reason() formats the reference's message when someone reads it.
enum class DenyReason : uint8_t {
  kNone,                // allow, ask
  kMessage,             // Resolution::reason holds the text
  kNoMatchingRule,      // "no matching rule found"
  kDeniedByRule,        // "denied by policy FILE:LINE"
  kAllowWithoutTarget,  // an allow rule, but no target from the caller or the rule
  kDispVmWithoutBase,   // allow to @dispvm, but the caller has no default_dispvm
  kAskWithoutTargets,   // an ask rule, but no candidate
};

struct Resolution {
  Decision decision = Decision::kDeny;
  int rule_index = -1;  // matching rule, -1 = none
  // allow: the resolved target (@dispvm -> @dispvm:TEMPLATE, @adminvm -> dom0).
  std::string target;
  // ask: candidates (sorted) and the pre-selected one.
  std::vector<std::string> targets_for_ask;
  std::optional<std::string> default_target;
  std::string requested_target;  // normalised request target
  std::optional<std::string> user;
  bool notify = true;
  bool autostart = false;
  // deny: where and why.
  Stage stage = Stage::kEvaluate;
  ErrorKind error = ErrorKind::kAccessDenied;
  // Why a call is denied: use Policy::Reason(). `reason` holds the text only
  // when why == kMessage (request refused, policy not loaded, ...); allow and
  // ask have no denial reason, their reason is the rule (Policy::Where).
  DenyReason why = DenyReason::kNone;
  std::string reason;
};

struct ResolvedRequest;  // a request with its qubes looked up (evaluate.cc)

// Receives one line per step of an evaluation (`tessera policy explain`).
using TraceFn = std::function<void(std::string_view line)>;

class Policy {
 public:
  // Reads the policy; on failure returns every error found (one per bad line
  // where possible), never a partial policy.
  static tl::expected<Policy, std::vector<LoadError>> Load(const PolicyFileSystem& fs,
                                                           const LoadSpec& spec);
  // In-memory convenience: `files` must hold "__main__"; `compat_files` are
  // what !compat-4.0 reads (legacy file name -> text).
  static tl::expected<Policy, std::vector<LoadError>> LoadMemory(
      const std::map<std::string, std::string, std::less<>>& files,
      const std::map<std::string, std::string, std::less<>>& compat_files = {});

  const std::vector<Rule>& rules() const { return rules_; }
  const std::string& file_name(uint32_t index) const { return files_[index]; }
  const std::vector<std::string>& files() const { return files_; }
  // "FILE:LINE" of a rule.
  std::string Where(const Rule& rule) const;
  // The reference's message for why `res` (a result of this policy) is
  // denied; "" for allow and ask.
  std::string Reason(const Resolution& res) const;

  // The whole evaluation: normalisation, first matching rule, action.
  Resolution Evaluate(const Request& request, const SystemInfo& system,
                      const TraceFn& trace = nullptr) const;
  Resolution Evaluate(const NormalizedRequest& request, const SystemInfo& system,
                      const TraceFn& trace = nullptr) const;
  // Index of the first rule matching the request, or -1.
  int FindRule(const NormalizedRequest& request, const SystemInfo& system,
               const TraceFn& trace = nullptr) const;
  // Candidates for an `ask` prompt built from all rules (reference semantics).
  std::vector<std::string> CollectTargetsForAsk(const NormalizedRequest& request,
                                                const SystemInfo& system) const;
  // For `explain`: the targets some allow/ask rule would offer for this
  // request but a `deny` rule above it takes out of the `ask` list, each with
  // that deny rule's index (in file order of the removing rules). When an
  // `ask` has no candidate, these are the rules that removed them.
  struct RemovedCandidate {
    std::string target;
    int rule_index = -1;
  };
  std::vector<RemovedCandidate> RemovedAskCandidates(const NormalizedRequest& request,
                                                     const SystemInfo& system) const;

 private:
  friend class PolicyBuilder;
  // The evaluation proper, on views of the request's strings (no copies).
  int FindRule(const ResolvedRequest& r, const SystemInfo& system, const TraceFn& trace) const;
  std::vector<std::string> CollectTargetsForAsk(const ResolvedRequest& r,
                                                const SystemInfo& system) const;
  Resolution Evaluate(const ResolvedRequest& r, const SystemInfo& system,
                      const TraceFn& trace) const;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void BuildIndex();
  template <class Fn>
  void ForEachCandidate(std::string_view service, Fn&& fn) const;

  std::vector<Rule> rules_;
  std::vector<std::string> files_;
  std::unordered_map<std::string, std::vector<uint32_t>, Hash, std::equal_to<>> by_service_;
  std::vector<uint32_t> any_service_;
};

// Token and rule level semantics, exposed for tests and `explain`.
//
// Does `token` (from a rule) match `other`? For targets `other` is the
// normalised request target and `source` the request's source (needed for
// @dispvm:NAME against @dispvm); for sources pass other_class = kName and no source.
bool MatchToken(const Token& token, std::string_view other, TokenClass other_class,
                const SystemInfo& system, const std::string* source);
bool RuleMatches(const Rule& rule, const NormalizedRequest& request, const SystemInfo& system);
// Service, argument and source only (used to collect `ask` targets).
bool RuleMatchesButTarget(const Rule& rule, const NormalizedRequest& request,
                          const SystemInfo& system);
// Concrete targets a target/redirect token can denote in an `ask` list
// (qube names, "@dispvm", "@dispvm:TEMPLATE", "@adminvm"); uuids mapped to names.
std::vector<std::string> ExpandTarget(const Token& token, const SystemInfo& system);

// The user's answer to an `ask`: the chosen target, or the denial.
tl::expected<std::string, Denial> HandleAskResponse(const Rule& rule, std::string_view where,
                                                    const std::vector<std::string>& targets,
                                                    bool allowed, std::string_view target);

// The text the Qubes policy daemon replies for an allowed call
// ("user=DEFAULT\nresult=allow\ntarget=...\n..."), or why it cannot be executed
// (loopback call, unknown target).
tl::expected<std::string, Denial> DaemonResponse(const NormalizedRequest& request,
                                                 std::string_view target,
                                                 const std::optional<std::string>& user,
                                                 bool autostart, const SystemInfo& system);

}  // namespace tessera::policy
