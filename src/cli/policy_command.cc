// `tessera policy check|eval|explain`: the qrexec policy engine from the
// command line (docs/POLICY.md). A thin layer over src/policy.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "common/fs.h"
#include "common/paths.h"
#include "config/loader.h"
#include "policy/holder.h"
#include "policy/loader.h"
#include "policy/policy.h"
#include "policy/system.h"
#include "rpc/decision.h"
#include "rpc/system_from_config.h"

namespace tessera::cli {
namespace {

// `policy eval` prints its keys in the documented order (docs/POLICY.md).
using json = nlohmann::ordered_json;

struct PolicyOptions {
  std::string policy_dir;   // default: the system description's, or /etc/tessera/policy.d
  std::string runtime_dir;  // default: $TESSERA_RUNTIME_DIR/policy.d
  std::string compat_dir = "/etc/tessera/policy";
  std::string system_file;
  std::string service;
  std::string source;
  std::string target;
};

void AddDirOptions(CLI::App* cmd, PolicyOptions& opts) {
  cmd->add_option("--policy-dir", opts.policy_dir,
                  "Policy directory (default: policy_dir of the system description when "
                  "--config or TESSERA_CONFIG is given, else /etc/tessera/policy.d)");
  cmd->add_option("--runtime-dir", opts.runtime_dir,
                  "Runtime policy directory, searched first (default $TESSERA_RUNTIME_DIR/policy.d, "
                  "i.e. /run/tessera/policy.d)");
  cmd->add_option("--compat-dir", opts.compat_dir,
                  "Legacy R4.0 per-service policy read by !compat-4.0 (default /etc/tessera/policy)");
}

void AddRequestOptions(CLI::App* cmd, PolicyOptions& opts) {
  AddDirOptions(cmd, opts);
  cmd->add_option("--system", opts.system_file,
                  "Qubes as JSON {\"qubes\": {NAME: {\"type\", \"tags\", ...}}} (default: the "
                  "system description, --config)");
  cmd->add_option("service", opts.service, "SERVICE[+ARGUMENT]")->required();
  cmd->add_option("source", opts.source, "Calling qube")->required();
  cmd->add_option("target", opts.target, "Requested target (qube, @default, @dispvm, ...)")
      ->required();
}

// The system description, loaded at most once per command.
class ConfigCache {
 public:
  explicit ConfigCache(const CliContext& ctx) : ctx_(ctx) {}
  // Whether a description was named (--config or TESSERA_CONFIG).
  bool Given() const {
    const char* env = std::getenv("TESSERA_CONFIG");
    return !ctx_.config_flag.empty() || (env != nullptr && *env != '\0');
  }
  std::string Path() const { return ConfigPath(ctx_.config_flag); }
  // The validated description, or nullptr after printing why not.
  const config::System* Get() {
    if (!outcome_) {
      outcome_ = config::LoadSystem(Path());
      if (!outcome_->system) {
        std::fprintf(stderr, "tessera policy: system description %s is not usable:\n",
                     Path().c_str());
        for (const auto& d : outcome_->diagnostics) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      }
    }
    return outcome_->system ? &*outcome_->system : nullptr;
  }

 private:
  const CliContext& ctx_;
  std::optional<config::LoadOutcome> outcome_;
};

// The directories to read; nullopt after printing why they are not known.
std::optional<policy::PolicyDirs> Dirs(const PolicyOptions& opts, ConfigCache& config) {
  policy::PolicyDirs dirs;
  dirs.policy_dir = opts.policy_dir;
  if (dirs.policy_dir.empty()) {
    if (config.Given()) {
      const config::System* system = config.Get();
      if (system == nullptr) {
        std::fprintf(stderr, "tessera policy: (or give --policy-dir)\n");
        return std::nullopt;
      }
      dirs.policy_dir = system->policy_dir;
    } else {
      dirs.policy_dir = std::string(kDefaultPolicyDir);
    }
  }
  dirs.runtime_dir = opts.runtime_dir.empty() ? RuntimeDir() + "/policy.d" : opts.runtime_dir;
  dirs.compat_dir = opts.compat_dir;
  return dirs;
}

int RunCheck(const PolicyOptions& opts, const CliContext& ctx) {
  ConfigCache config(ctx);
  const auto dirs = Dirs(opts, config);
  if (!dirs) return kExitUsage;
  auto loaded = policy::LoadPolicyDirs(*dirs);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.ToPathString().c_str());
    return 1;
  }
  std::printf("policy OK: %zu rules from %zu files\n", loaded->rules().size(),
              loaded->files().size());
  return 0;
}

// The qubes the request is evaluated against; nullptr after printing why.
std::unique_ptr<policy::SystemInfo> LoadSystem(const PolicyOptions& opts, ConfigCache& config) {
  if (!opts.system_file.empty()) {
    auto text = ReadRegularFile(opts.system_file);
    if (!text) {
      std::fprintf(stderr, "tessera policy: --system %s: %s\n", opts.system_file.c_str(),
                   text.error().ToString().c_str());
      return nullptr;
    }
    auto sys = policy::SystemInfo::FromJsonText(*text);
    if (!sys) {
      std::fprintf(stderr, "tessera policy: --system %s: %s\n", opts.system_file.c_str(),
                   sys.error().ToString().c_str());
      return nullptr;
    }
    return std::make_unique<policy::SystemInfo>(std::move(*sys));
  }
  // The qubes of the system description. Power states are not known here
  // (the daemon supplies them), so every qube but dom0 counts as Halted.
  const config::System* system = config.Get();
  if (system == nullptr) {
    std::fprintf(stderr, "tessera policy: (use --system FILE or --config FILE)\n");
    return nullptr;
  }
  return std::make_unique<policy::SystemInfo>(rpc::SystemFromConfig(*system));
}

json Nullable(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

struct Outcome {
  policy::Resolution res;
  const policy::Policy* policy = nullptr;  // null when it failed to load
};

Outcome Evaluate(const PolicyOptions& opts, const policy::SystemInfo& system,
                 const tl::expected<policy::Policy, std::vector<policy::LoadError>>& loaded,
                 const policy::TraceFn& trace) {
  Outcome out;
  if (!loaded) {
    out.res = policy::DenyForBrokenPolicy(loaded.error());
    return out;
  }
  out.policy = &*loaded;
  policy::Request request;
  policy::SplitServiceArgument(opts.service, request);
  request.source = opts.source;
  request.target = opts.target;
  out.res = rpc::Decide(*loaded, request, system, trace);
  return out;
}

json ToJson(const Outcome& out) {
  const policy::Resolution& r = out.res;
  json rule = nullptr;
  if (out.policy != nullptr && r.rule_index >= 0) {
    const policy::Rule& matched = out.policy->rules()[static_cast<size_t>(r.rule_index)];
    rule = {{"file", out.policy->file_name(matched.file_index)}, {"line", matched.line}};
  }
  std::string reason = out.policy != nullptr ? out.policy->Reason(r) : r.reason;
  if (reason.empty() && out.policy != nullptr && r.rule_index >= 0) {
    reason = std::string(r.decision == policy::Decision::kAsk ? "ask the user, by policy "
                                                               : "allowed by policy ") +
             out.policy->Where(out.policy->rules()[static_cast<size_t>(r.rule_index)]);
  }
  const bool allow = r.decision == policy::Decision::kAllow;
  const bool deny = r.decision == policy::Decision::kDeny;
  return {{"result", std::string(policy::DecisionName(r.decision))},
          {"target", allow ? json(r.target) : json(nullptr)},
          {"targets_for_ask", r.targets_for_ask},
          {"default_target", Nullable(r.default_target)},
          {"user", deny ? json(nullptr) : Nullable(r.user)},
          {"notify", r.notify},
          {"autostart", deny ? false : r.autostart},
          {"rule", rule},
          {"reason", reason}};
}

// A name the system does not know, in a request or a rule: the call or rule
// silently never applies to the qube meant. Keywords, uuid: and dom0 are known.
bool UnknownQube(std::string_view name, const policy::SystemInfo& system) {
  if (name.starts_with("@dispvm:")) name.remove_prefix(8);
  if (name.empty() || name.starts_with('@') || name == "*" || policy::IsDom0(name)) return false;
  return system.Find(name) == nullptr;
}

// `explain`: one warning per qube name (in the request, or in a rule for this
// service) that is not in the system the call is evaluated against.
void WarnUnknownQubes(const PolicyOptions& opts, const policy::SystemInfo& system,
                      const policy::Policy* policy, const std::string& service) {
  std::vector<std::string> warned;
  auto warn = [&](std::string_view name, const std::string& where) {
    std::string key = std::string(name) + "\n" + where;
    if (std::find(warned.begin(), warned.end(), key) != warned.end()) return;
    warned.push_back(key);
    std::fprintf(stderr,
                 "tessera policy: warning: %s names qube '%s', which is not in the system "
                 "description\n",
                 where.c_str(), std::string(name).c_str());
  };
  if (UnknownQube(opts.source, system)) warn(opts.source, "the request's source");
  if (UnknownQube(opts.target, system)) warn(opts.target, "the request's target");
  if (policy == nullptr) return;
  for (const policy::Rule& rule : policy->rules()) {
    if (rule.service && *rule.service != service) continue;
    std::vector<const policy::Token*> tokens = {&rule.source, &rule.target};
    if (rule.redirect) tokens.push_back(&*rule.redirect);
    if (rule.default_target) tokens.push_back(&*rule.default_target);
    for (const policy::Token* token : tokens) {
      if (UnknownQube(token->text, system)) warn(token->text, "rule " + policy->Where(rule));
    }
  }
}

// `explain` of an `ask` left without candidates: which rules took them away.
void ExplainEmptyAsk(const PolicyOptions& opts, const policy::SystemInfo& system,
                     const policy::Policy& policy, const policy::Resolution& r) {
  policy::Request request;
  policy::SplitServiceArgument(opts.service, request);
  request.source = opts.source;
  request.target = opts.target;
  auto normalized = policy::NormalizeRequest(request, system);
  if (!normalized) return;
  const policy::Rule& ask = policy.rules()[static_cast<size_t>(r.rule_index)];
  auto removed = policy.RemovedAskCandidates(*normalized, system);
  for (const auto& c : removed) {
    std::printf("candidate %s: removed by the deny rule %s\n", c.target.c_str(),
                policy.Where(policy.rules()[static_cast<size_t>(c.rule_index)]).c_str());
  }
  if (!ask.autostart && !policy.CollectTargetsForAsk(*normalized, system).empty()) {
    std::printf(
        "the remaining candidates are not running, and autostart=no at %s allows only "
        "running ones\n",
        policy.Where(ask).c_str());
  } else if (removed.empty() && !ask.redirect) {
    std::printf("no rule offers a target for this request (other than the caller itself)\n");
  }
}

int RunEval(const PolicyOptions& opts, const CliContext& ctx, bool explain) {
  ConfigCache config(ctx);
  auto system = LoadSystem(opts, config);
  if (!system) return kExitUsage;
  const auto found_dirs = Dirs(opts, config);
  if (!found_dirs) return kExitUsage;
  const policy::PolicyDirs& dirs = *found_dirs;
  auto loaded = policy::LoadPolicyDirs(dirs);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.ToPathString().c_str());
  }
  if (!explain) {
    Outcome out = Evaluate(opts, *system, loaded, nullptr);
    std::printf("%s\n", ToJson(out).dump().c_str());
    return 0;
  }
  policy::Request parsed;
  policy::SplitServiceArgument(opts.service, parsed);
  WarnUnknownQubes(opts, *system, loaded ? &*loaded : nullptr, parsed.service);
  std::printf("policy: %s (runtime %s, legacy %s)\n", dirs.policy_dir.c_str(),
              dirs.runtime_dir.c_str(), dirs.compat_dir.c_str());
  if (loaded) {
    std::printf("loaded %zu rules from %zu files\n", loaded->rules().size(),
                loaded->files().size());
  } else {
    std::printf("the policy FAILED to load (%zu errors, listed on stderr): every call is denied\n",
                loaded.error().size());
  }
  bool header = false;
  Outcome out = Evaluate(opts, *system, loaded, [&](std::string_view line) {
    if (line.starts_with("  rule") && !header) {
      std::printf("rules considered (those for this service and for '*', in policy order):\n");
      header = true;
    }
    std::string text(line);
    std::replace(text.begin(), text.end(), '\t', ' ');
    std::printf("%s\n", text.c_str());
  });
  const policy::Resolution& r = out.res;
  if (loaded && r.stage != policy::Stage::kRequest && !header) {
    std::printf("no rule names this service or '*'\n");
  }
  std::printf("decision: %s", std::string(policy::DecisionName(r.decision)).c_str());
  if (r.decision == policy::Decision::kAllow) std::printf(" target=%s", r.target.c_str());
  if (r.decision == policy::Decision::kAsk) {
    std::printf(" candidates=[");
    for (size_t i = 0; i < r.targets_for_ask.size(); ++i) {
      std::printf("%s%s", i ? ", " : "", r.targets_for_ask[i].c_str());
    }
    std::printf("]");
    if (r.default_target) std::printf(" default=%s", r.default_target->c_str());
  }
  if (r.decision != policy::Decision::kDeny && r.user) std::printf(" user=%s", r.user->c_str());
  std::printf(" notify=%s", r.notify ? "yes" : "no");
  if (r.decision != policy::Decision::kDeny) std::printf(" autostart=%s", r.autostart ? "yes" : "no");
  std::printf("\n");
  if (out.policy != nullptr && r.rule_index >= 0) {
    const auto& rule = out.policy->rules()[static_cast<size_t>(r.rule_index)];
    std::string text = rule.ToString();
    std::replace(text.begin(), text.end(), '\t', ' ');
    std::printf("rule: %s: %s\n", out.policy->Where(rule).c_str(), text.c_str());
  }
  std::printf("reason: %s\n", ToJson(out)["reason"].get<std::string>().c_str());
  if (out.policy != nullptr && r.why == policy::DenyReason::kAskWithoutTargets) {
    ExplainEmptyAsk(opts, *system, *out.policy, r);
  }
  return 0;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cmd = app.add_subcommand("policy", "Check and evaluate the qrexec RPC policy");
  cmd->require_subcommand(1);
  auto opts = std::make_shared<PolicyOptions>();

  auto* check = cmd->add_subcommand("check", "Load the whole policy; list every error (FILE:LINE: message)");
  AddDirOptions(check, *opts);
  check->callback([&ctx, opts] { ctx.exit_code = RunCheck(*opts, ctx); });

  auto* eval = cmd->add_subcommand("eval", "Evaluate one call; print the decision as JSON");
  AddRequestOptions(eval, *opts);
  eval->callback([&ctx, opts] { ctx.exit_code = RunEval(*opts, ctx, /*explain=*/false); });

  auto* explain = cmd->add_subcommand("explain", "Evaluate one call; show which rules were considered and why");
  AddRequestOptions(explain, *opts);
  explain->callback([&ctx, opts] { ctx.exit_code = RunEval(*opts, ctx, /*explain=*/true); });
}

const CommandRegistration kRegistration({"policy"}, Register);

}  // namespace
}  // namespace tessera::cli
