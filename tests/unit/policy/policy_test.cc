// Unit tests for the policy module beyond the reference cases: error
// collection and locations, include cycles and limits, real directories,
// the service index, PolicyHolder, SystemInfo parsing.

#include "policy/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>

#include "policy/holder.h"
#include "policy/loader.h"
#include "policy/system.h"

namespace tessera::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using FileMap = std::map<std::string, std::string, std::less<>>;

SystemInfo TestSystem() {
  auto sys = SystemInfo::FromJsonText(R"({"qubes": {
    "dom0": {"type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000", "power_state": "Running",
             "default_dispvm": "dvm"},
    "work": {"type": "AppVM", "tags": ["trusted"], "uuid": "11111111-1111-1111-1111-111111111111",
             "default_dispvm": "dvm", "power_state": "Running"},
    "vault": {"type": "AppVM", "uuid": "22222222-2222-2222-2222-222222222222"},
    "sys-net": {"type": "AppVM", "uuid": "33333333-3333-3333-3333-333333333333", "internal": true},
    "dvm": {"type": "AppVM", "template_for_dispvms": true, "tags": ["disp"],
            "uuid": "44444444-4444-4444-4444-444444444444"},
    "fedora": {"type": "TemplateVM", "uuid": "55555555-5555-5555-5555-555555555555"}}})");
  EXPECT_TRUE(sys) << sys.error().ToString();
  return std::move(*sys);
}

Request Req(std::string service, std::string source, std::string target) {
  Request r;
  SplitServiceArgument(service, r);
  r.source = std::move(source);
  r.target = std::move(target);
  return r;
}

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "policy-test-XXXXXX").string();
    if (::mkdtemp(t.data()) != nullptr) path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string Write(const std::string& rel, const std::string& text) const {
    auto p = std::filesystem::path(path_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PolicyLoad, ReportsEveryErrorWithFileAndLine) {
  auto p = Policy::LoadMemory({{"__main__",
                                "test.S * @anyvm @anyvm allow\n"
                                "test.S * @anyvm\n"
                                "# fine\n"
                                "test.S * @anyvm @anyvm frobnicate\n"
                                "!include other\n"
                                "test.S * @bogus @anyvm deny\n"},
                               {"other", "\n\n* +x @anyvm @anyvm deny\n"}});
  ASSERT_FALSE(p);
  std::vector<std::string> got;
  for (const auto& e : p.error()) got.push_back(e.ToString());
  EXPECT_THAT(got, ElementsAre("__main__:2: wrong number of fields",
                               "__main__:4: invalid action: frobnicate",
                               "other:3: only * argument allowed for * service",
                               "__main__:6: invalid source token: '@bogus'"));
}

TEST(PolicyLoad, IncludeCycleIsAnErrorNotACrash) {
  auto p = Policy::LoadMemory({{"__main__", "!include a\n"},
                               {"a", "test.S * @anyvm @anyvm deny\n!include b\n"},
                               {"b", "!include a\n"}});
  ASSERT_FALSE(p);
  ASSERT_EQ(p.error().size(), 1u);
  EXPECT_EQ(p.error()[0].file, "b");
  EXPECT_EQ(p.error()[0].line, 1);
  EXPECT_THAT(p.error()[0].message, HasSubstr("include cycle"));
  auto self = Policy::LoadMemory({{"__main__", "!include __main__\n"}});
  ASSERT_FALSE(self);
  EXPECT_THAT(self.error()[0].message, HasSubstr("include cycle"));
  // An old-syntax file including itself.
  auto svc = Policy::LoadMemory({{"__main__", "!include-service test.S * a\n"}, {"a", "$include:a\n"}});
  ASSERT_FALSE(svc);
  EXPECT_THAT(svc.error()[0].message, HasSubstr("include cycle"));
}

TEST(PolicyLoad, DiamondIncludesAreFine) {
  auto p = Policy::LoadMemory({{"__main__", "!include a\n!include a\n"},
                               {"a", "test.S * @anyvm @anyvm deny\n"}});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->rules().size(), 2u);
}

TEST(PolicyLoad, DirectivesNeedTheirArity) {
  for (const char* line : {"!include", "!include a b", "!include-dir", "!include-service a +b",
                           "!compat-4.0 now"}) {
    auto p = Policy::LoadMemory({{"__main__", line}, {"a", ""}, {"b", ""}});
    ASSERT_FALSE(p) << line;
    EXPECT_EQ(p.error()[0].message, "invalid number of params") << line;
  }
  auto p = Policy::LoadMemory({{"__main__", "!includes a"}});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error()[0].message, "invalid directive");
}

TEST(PolicyLoad, RealDirectoriesIncludesAndRuntimeOverride) {
  TempDir t;
  t.Write("etc/30-user.policy",
          "!include include/common\n"
          "!include-dir extra.d\n"
          "!include-service admin.vm.List * include/admin\n");
  t.Write("etc/include/common", "test.S * work vault allow\n");
  t.Write("etc/extra.d/20-b.policy", "test.B * @anyvm @anyvm deny\n");
  t.Write("etc/extra.d/10-a.policy", "test.A * @anyvm @anyvm deny\n");
  t.Write("etc/extra.d/ignored.txt", "garbage\n");
  t.Write("etc/40-shadowed.policy", "garbage garbage\n");
  t.Write("run/40-shadowed.policy", "test.R * @anyvm @anyvm deny\n");
  t.Write("etc/include/admin", "work dom0 allow\n$anyvm $anyvm deny\n");
  std::filesystem::create_symlink(t.path() + "/etc/include/common", t.path() + "/etc/50-link.policy");
  PolicyDirs dirs{t.path() + "/etc", t.path() + "/run", t.path() + "/compat"};
  auto p = LoadPolicyDirs(dirs);
  ASSERT_TRUE(p) << p.error()[0].ToString();
  std::vector<std::string> where;
  for (const auto& r : p->rules()) where.push_back(p->Where(r));
  EXPECT_THAT(where, ElementsAre("include/common:1", "extra.d/10-a.policy:1",
                                 "extra.d/20-b.policy:1", "include/admin:1", "include/admin:2",
                                 "run:40-shadowed.policy:1",
                                 // A symlinked top-level file keeps its own name.
                                 "50-link.policy:1"));
  EXPECT_EQ(p->rules()[3].service, "admin.vm.List");
}

TEST(PolicyLoad, RealDirectoryErrorsNameThePath) {
  TempDir t;
  const std::string file = t.Write("etc/30-user.policy", "ok.S * @anyvm @anyvm deny\nnope\n");
  t.Write("etc/31-x.policy", "!include missing\n");
  auto p = LoadPolicyDirs({t.path() + "/etc", t.path() + "/run", ""});
  ASSERT_FALSE(p);
  ASSERT_EQ(p.error().size(), 2u);
  EXPECT_EQ(p.error()[0].ToString(), "30-user.policy:2: wrong number of fields");
  EXPECT_EQ(p.error()[0].ToPathString(), file + ":2: wrong number of fields");
  EXPECT_THAT(p.error()[1].message, HasSubstr("not a file"));
}

TEST(PolicyLoad, InvalidFileNameRejectsWholePolicy) {
  TempDir t;
  t.Write("etc/30-User.policy", "test.S * @anyvm @anyvm allow\n");
  t.Write("etc/31-ok.policy", "test.S * @anyvm @anyvm allow\n");
  auto p = LoadPolicyDirs({t.path() + "/etc", "", ""});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error()[0].kind, ErrorKind::kAccessDenied);
  EXPECT_THAT(p.error()[0].message, HasSubstr("invalid filename"));
}

TEST(PolicyLoad, MissingPolicyDirIsAnErrorMissingRuntimeDirIsNot) {
  TempDir t;
  EXPECT_FALSE(LoadPolicyDirs({t.path() + "/nope", "", ""}));
  t.Write("etc/30-user.policy", "test.S * @anyvm @anyvm allow\n");
  EXPECT_TRUE(LoadPolicyDirs({t.path() + "/etc", t.path() + "/no-runtime", t.path() + "/no-compat"}));
}

TEST(PolicyLoad, Compat40FromRealLegacyDir) {
  TempDir t;
  t.Write("etc/35-compat.policy", "!compat-4.0\n");
  t.Write("legacy/test.S", "work vault allow\n");
  t.Write("legacy/test.S+arg", "work vault ask\n");
  t.Write("legacy/test.S+arg.rpmnew", "garbage\n");
  t.Write("legacy/.hidden", "garbage\n");
  auto p = LoadPolicyDirs({t.path() + "/etc", "", t.path() + "/legacy"});
  ASSERT_TRUE(p) << p.error()[0].ToString();
  ASSERT_EQ(p->rules().size(), 4u);
  EXPECT_EQ(p->rules()[0].argument, "+arg");
  EXPECT_EQ(p->rules()[1].action, Action::kDeny);
  EXPECT_EQ(p->rules()[1].line, 0);
  EXPECT_EQ(p->rules()[2].target.text, "@adminvm");
  EXPECT_FALSE(p->rules()[3].argument.has_value());
  // Legacy files are named relative to the legacy dir, implicit denies included.
  EXPECT_EQ(p->Where(p->rules()[0]), "test.S+arg:1");
  EXPECT_EQ(p->Where(p->rules()[1]), "test.S+arg:0");
  EXPECT_EQ(p->Where(p->rules()[3]), "test.S:1");
}

TEST(PolicyLoad, LineEndsAndSpacesAsPython) {
  TempDir t;
  // Files on disk are read with universal newlines: a lone CR ends a line.
  t.Write("etc/50-cr.policy", "t.A * @anyvm @anyvm deny\rt.B * @anyvm @anyvm allow\r\n"
                              "t.C * @anyvm @anyvm deny\r");
  // U+00A0 and U+3000 separate fields and are stripped, as str.split() does.
  t.Write("etc/60-nbsp.policy", "\xe3\x80\x80t.D * @anyvm\xc2\xa0@anyvm allow\xc2\xa0\n");
  auto p = LoadPolicyDirs({t.path() + "/etc", "", ""});
  ASSERT_TRUE(p) << p.error()[0].ToString();
  std::vector<std::string> where;
  for (const auto& r : p->rules()) where.push_back(p->Where(r) + " " + *r.service);
  EXPECT_THAT(where, ElementsAre("50-cr.policy:1 t.A", "50-cr.policy:2 t.B", "50-cr.policy:3 t.C",
                                 "60-nbsp.policy:1 t.D"));
  EXPECT_EQ(p->rules()[3].target.text, "@anyvm");
  // In memory (StringPolicy reads through StringIO) only LF ends a line, so
  // this is one line with too many fields.
  EXPECT_FALSE(Policy::LoadMemory({{"__main__", "t.A * @anyvm @anyvm deny\rt.B * @anyvm @anyvm allow"}}));
  // Other non-ASCII bytes are part of a field.
  auto q = Policy::LoadMemory({{"__main__", "t.E * w\xe2\x80\x8bx @anyvm allow"}});
  ASSERT_TRUE(q);
  EXPECT_EQ(q->rules()[0].source.text, "w\xe2\x80\x8bx");
}

TEST(PolicyLoad, RejectsHugeExpansion) {
  // Each file includes the next twice: 2^40 rules if nothing stopped it.
  FileMap files{{"__main__", "!include f0\n!include f0\n"}};
  for (int i = 0; i < 40; ++i) {
    // Appended, not `"f" + std::to_string(i)`: GCC 12 -O3 takes inserting at
    // the front of a temporary for an overlapping memcpy (-Wrestrict).
    std::string next = "f";
    next += std::to_string(i + 1);
    std::string name = "f";
    name += std::to_string(i);
    files[name] = "!include " + next + "\n!include " + next + "\n";
  }
  files["f40"] = "test.S * @anyvm @anyvm deny\n";
  auto p = Policy::LoadMemory(files);
  ASSERT_FALSE(p);
}

TEST(PolicyEval, FirstMatchAllowAskDeny) {
  auto p = Policy::LoadMemory({{"__main__",
                                "test.S * work vault deny notify=no\n"
                                "test.S +x @tag:trusted @anyvm allow target=@dispvm user=u\n"
                                "test.S * @anyvm @anyvm ask default_target=vault\n"
                                "* * @anyvm @adminvm allow autostart=no\n"}});
  ASSERT_TRUE(p);
  const SystemInfo sys = TestSystem();
  Resolution r = p->Evaluate(Req("test.S", "work", "vault"), sys);
  EXPECT_EQ(r.decision, Decision::kDeny);
  EXPECT_FALSE(r.notify);
  EXPECT_EQ(r.rule_index, 0);
  r = p->Evaluate(Req("test.S+x", "work", "fedora"), sys);
  EXPECT_EQ(r.decision, Decision::kAllow);
  EXPECT_EQ(r.target, "@dispvm:dvm");
  EXPECT_EQ(r.user, "u");
  r = p->Evaluate(Req("test.S", "vault", "nonexistent"), sys);
  EXPECT_EQ(r.decision, Decision::kAsk);
  EXPECT_EQ(r.requested_target, "@default");
  // Every target the rules for this service/source could allow: @anyvm gives
  // all but dom0 (and never the caller or internal qubes), the last rule adds
  // dom0; @dispvm is dropped because vault has no default_dispvm.
  EXPECT_THAT(r.targets_for_ask, ElementsAre("@dispvm:dvm", "dom0", "dvm", "fedora", "work"));
  EXPECT_EQ(r.default_target, std::nullopt);  // vault is the caller, so not a candidate
  r = p->Evaluate(Req("other.Svc", "vault", "@adminvm"), sys);
  EXPECT_EQ(r.decision, Decision::kAllow);
  EXPECT_EQ(r.target, "dom0");
  r = p->Evaluate(Req("other.Svc", "vault", "work"), sys);
  EXPECT_EQ(r.decision, Decision::kDeny);
  EXPECT_EQ(r.why, DenyReason::kNoMatchingRule);
  EXPECT_EQ(p->Reason(r), "no matching rule found");
}

TEST(PolicyEval, DenialReasonsAreFormattedOnDemand) {
  auto p = Policy::LoadMemory({{"__main__",
                                "t.Deny * work vault deny\n"
                                "t.NoTarget * work @anyvm allow target=nonexistent\n"
                                "t.Disp * @anyvm @dispvm allow\n"
                                "t.Ask * @anyvm @anyvm ask target=vault autostart=no\n"
                                "t.Auto * @anyvm @anyvm allow autostart=no\n"
                                "t.Tpl * @anyvm @anyvm allow target=@dispvm:work\n"}});
  ASSERT_TRUE(p);
  const SystemInfo sys = TestSystem();
  struct Case {
    Request req;
    DenyReason why;
    std::string text;
  } cases[] = {
      {Req("t.Deny", "work", "vault"), DenyReason::kDeniedByRule, "denied by policy __main__:1"},
      {Req("t.NoTarget", "work", "vault"), DenyReason::kAllowWithoutTarget,
       "policy define 'allow' action at __main__:2 but no target is specified by caller or policy"},
      {Req("t.Disp", "vault", "@dispvm"), DenyReason::kDispVmWithoutBase,
       "policy define 'allow' action to @dispvm at __main__:3 but no DispVM base is set for this VM"},
      {Req("t.Ask", "work", "vault"), DenyReason::kAskWithoutTargets,
       "policy define 'ask' action at __main__:4 but no target is available to choose from"},
      {Req("t.Auto", "work", "vault"), DenyReason::kMessage,
       "target vault is denied because it would require autostart"},
      {Req("t.Tpl", "vault", "work"), DenyReason::kMessage, "not a template for dispvm: work"},
      {Req("t.Deny", "work", "@anyvm"), DenyReason::kMessage,
       "invalid intended target token: '@anyvm'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.req.service);
    Resolution r = p->Evaluate(c.req, sys);
    EXPECT_EQ(r.decision, Decision::kDeny);
    EXPECT_EQ(r.why, c.why);
    EXPECT_EQ(p->Reason(r), c.text);
  }
  // The holder formats the text at once: its result outlives the policy.
  PolicyHolder holder;
  holder.Reload(std::move(p));
  Resolution r = holder.Evaluate(Req("t.Deny", "work", "vault"), sys);
  EXPECT_EQ(r.why, DenyReason::kMessage);
  EXPECT_EQ(r.reason, "denied by policy __main__:1");
}

TEST(PolicyEval, RequestNormalisation) {
  const SystemInfo sys = TestSystem();
  auto n = NormalizeRequest(Req("a", "work", ""), sys);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->target, "@default");
  n = NormalizeRequest(Req("a", "work", "uuid:22222222-2222-2222-2222-222222222222"), sys);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->target_class, TokenClass::kName);
  EXPECT_FALSE(NormalizeRequest(Req("a", "work", "@anyvm"), sys));
  EXPECT_FALSE(NormalizeRequest(Req("a", "work", "@tag:trusted"), sys));
  EXPECT_FALSE(NormalizeRequest(Req("a", "work", "@dispvm:vault"), sys));
  EXPECT_TRUE(NormalizeRequest(Req("a", "work", "@dispvm:dvm"), sys));
  Request bad = Req("a", "work", "vault");
  bad.argument = "x";
  auto e = NormalizeRequest(bad, sys);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().kind, ErrorKind::kInvalidRequest);
}

TEST(PolicyEval, LoopbackIsRefusedAtExecution) {
  const SystemInfo sys = TestSystem();
  auto n = NormalizeRequest(Req("a", "work", "work"), sys);
  ASSERT_TRUE(n);
  auto reply = DaemonResponse(*n, "work", std::nullopt, true, sys);
  ASSERT_FALSE(reply);
  EXPECT_THAT(reply.error().message, HasSubstr("loopback"));
  reply = DaemonResponse(*n, "vault", std::string("root"), false, sys);
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply,
            "user=root\nresult=allow\ntarget=vault\n"
            "target_uuid=uuid:22222222-2222-2222-2222-222222222222\nautostart=False\n"
            "requested_target=work");
}

// The service index must give exactly what a scan of every rule gives.
TEST(PolicyEval, IndexAgreesWithLinearScan) {
  std::mt19937 rng(42);
  const std::vector<std::string> services = {"*", "a.S", "b.S", "c.S"};
  const std::vector<std::string> sources = {"@anyvm", "work", "vault", "@tag:trusted", "*",
                                            "@type:TemplateVM"};
  const std::vector<std::string> targets = {"@anyvm", "vault", "@dispvm", "@adminvm", "@default",
                                            "*", "@dispvm:dvm", "@tag:disp"};
  std::string text;
  for (int i = 0; i < 300; ++i) {
    const std::string& svc = services[rng() % services.size()];
    const std::string tgt = targets[rng() % targets.size()];
    text += svc + " " + (svc == "*" || rng() % 2 ? "*" : "+x") + " " +
            sources[rng() % sources.size()] + " " + tgt + " " +
            (tgt == "@default" ? "deny" : (rng() % 2 ? "allow" : "deny")) + "\n";
  }
  auto p = Policy::LoadMemory({{"__main__", text}});
  ASSERT_TRUE(p) << p.error()[0].ToString();
  const SystemInfo sys = TestSystem();
  for (const std::string svc : {"a.S", "b.S", "c.S", "d.S"}) {
    for (const std::string src : {"work", "vault", "fedora", "dom0"}) {
      for (const std::string tgt : {"vault", "@dispvm", "dom0", "", "@dispvm:dvm", "fedora"}) {
        for (const std::string arg : {"", "+x"}) {
          auto n = NormalizeRequest(Req(svc + arg, src, tgt), sys);
          ASSERT_TRUE(n);
          int linear = -1;
          for (size_t i = 0; i < p->rules().size(); ++i) {
            if (RuleMatches(p->rules()[i], *n, sys)) {
              linear = static_cast<int>(i);
              break;
            }
          }
          EXPECT_EQ(p->FindRule(*n, sys), linear) << svc << arg << " " << src << " " << tgt;
        }
      }
    }
  }
}

// The reference's algorithm for `ask` candidates, on sets of strings.
std::vector<std::string> AskModel(const Policy& p, const NormalizedRequest& n, const SystemInfo& sys) {
  std::set<std::string> targets;
  for (size_t i = p.rules().size(); i-- > 0;) {
    const Rule& rule = p.rules()[i];
    if (!RuleMatchesButTarget(rule, n, sys)) continue;
    const Token& token = rule.action != Action::kDeny && rule.redirect ? *rule.redirect : rule.target;
    for (auto& t : ExpandTarget(token, sys)) {
      if (rule.action == Action::kDeny) {
        targets.erase(t);
      } else {
        targets.insert(t);
      }
    }
  }
  const QubeInfo* src = sys.Find(n.source);
  if (targets.erase("@dispvm") > 0 && src != nullptr && src->default_dispvm) {
    targets.insert("@dispvm:" + *src->default_dispvm);
  }
  if (targets.erase("@adminvm") > 0) targets.insert("dom0");
  if (src != nullptr) targets.erase(src->name);
  targets.erase(n.source);
  std::vector<std::string> out;
  for (const auto& t : targets) {
    std::string_view name = t;
    if (name.starts_with("@dispvm:")) name.remove_prefix(8);
    const QubeInfo* q = sys.Find(name);
    if (q != nullptr && !q->internal) out.push_back(t);
  }
  return out;
}

TEST(PolicyEval, AskCandidatesAgreeWithStringSetModel) {
  std::mt19937 rng(43);
  const std::vector<std::string> sources = {"@anyvm", "work", "vault", "@tag:trusted", "*",
                                            "@type:AppVM", "uuid:11111111-1111-1111-1111-111111111111"};
  const std::vector<std::string> targets = {
      "@anyvm", "vault", "@dispvm", "@adminvm", "*", "@dispvm:dvm", "@tag:disp", "dom0",
      "sys-net", "@type:TemplateVM", "@dispvm:@tag:disp", "work", "uuid:22222222-2222-2222-2222-222222222222"};
  const std::vector<std::string> redirects = {"vault", "@dispvm", "@adminvm", "@dispvm:dvm", "work"};
  for (int round = 0; round < 20; ++round) {
    std::string text;
    for (int i = 0; i < 12; ++i) {
      const std::string action = rng() % 3 == 0 ? "deny" : (rng() % 2 ? "allow" : "ask");
      std::string params;
      if (action != "deny" && rng() % 4 == 0) params = " target=" + redirects[rng() % redirects.size()];
      text += "a.S * " + sources[rng() % sources.size()] + " " + targets[rng() % targets.size()] +
              " " + action + params + "\n";
    }
    auto p = Policy::LoadMemory({{"__main__", text}});
    ASSERT_TRUE(p) << p.error()[0].ToString();
    const SystemInfo sys = TestSystem();
    for (const std::string src : {"work", "vault", "dvm", "dom0", "sys-net", "nonexistent",
                                  "uuid:11111111-1111-1111-1111-111111111111", "@dispvm:dvm"}) {
      auto n = NormalizeRequest(Req("a.S", src, "@default"), sys);
      ASSERT_TRUE(n);
      EXPECT_EQ(p->CollectTargetsForAsk(*n, sys), AskModel(*p, *n, sys)) << text << src;
    }
  }
}

// RemovedAskCandidates (what `explain` prints for an ask left without
// candidates): exactly the targets an allow/ask rule offers that the ask list
// lacks, each blamed on a deny rule.
TEST(PolicyEval, RemovedAskCandidatesAreTheOffersTheDenyRulesTookAway) {
  std::mt19937 rng(44);
  const std::vector<std::string> targets = {"@anyvm",    "vault", "@dispvm",
                                            "@adminvm",  "*",     "@dispvm:dvm",
                                            "@tag:disp", "work",  "@type:AppVM"};
  const SystemInfo sys = TestSystem();
  int nonempty = 0;
  for (int round = 0; round < 30; ++round) {
    std::string text, offers_only;
    for (int i = 0; i < 8; ++i) {
      const bool deny = rng() % 2 == 0;
      std::string line =
          "a.S * @anyvm " + targets[rng() % targets.size()] + (deny ? " deny\n" : " ask\n");
      text += line;
      if (!deny) offers_only += line;
    }
    auto p = Policy::LoadMemory({{"__main__", text}});
    auto offers = Policy::LoadMemory({{"__main__", offers_only.empty() ? "\n" : offers_only}});
    ASSERT_TRUE(p && offers) << text;
    auto n = NormalizeRequest(Req("a.S", "work", "@default"), sys);
    ASSERT_TRUE(n);
    const auto kept = p->CollectTargetsForAsk(*n, sys);
    std::set<std::string> expected;
    for (const auto& t : offers->CollectTargetsForAsk(*n, sys)) {
      if (std::find(kept.begin(), kept.end(), t) == kept.end()) expected.insert(t);
    }
    std::set<std::string> got;
    for (const auto& removed : p->RemovedAskCandidates(*n, sys)) {
      EXPECT_TRUE(got.insert(removed.target).second) << "reported twice: " << removed.target;
      ASSERT_GE(removed.rule_index, 0);
      EXPECT_EQ(p->rules()[static_cast<size_t>(removed.rule_index)].action, Action::kDeny) << text;
    }
    EXPECT_EQ(got, expected) << text;
    nonempty += expected.empty() ? 0 : 1;
  }
  EXPECT_GT(nonempty, 5);  // the random policies did exercise removals
}

TEST(PolicyEval, RemovedAskCandidatesNameTheTopmostDeny) {
  auto p = Policy::LoadMemory({{"__main__",
                                "a.S * work vault deny\n"
                                "a.S * work @type:AppVM deny\n"
                                "a.S * work @anyvm ask\n"}});
  ASSERT_TRUE(p);
  const SystemInfo sys = TestSystem();
  auto n = NormalizeRequest(Req("a.S", "work", "@default"), sys);
  ASSERT_TRUE(n);
  std::vector<std::string> got;
  for (const auto& r : p->RemovedAskCandidates(*n, sys)) {
    got.push_back(r.target + "@" + p->Where(p->rules()[static_cast<size_t>(r.rule_index)]));
  }
  // vault by line 1 (not 2); dvm (an AppVM) by line 2; work is the caller.
  EXPECT_THAT(got, ElementsAre("vault@__main__:1", "dvm@__main__:2"));
}

TEST(PolicyParse, MessagesHaveNoPythonText) {
  auto chars = ParseRule("test.Service+x * @anyvm @anyvm allow");
  ASSERT_FALSE(chars);
  EXPECT_EQ(chars.error(), "service 'test.Service+x' contains invalid characters: '+'");
  auto two = ParseRule("test.S +a/b:c @anyvm @anyvm allow");
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error(), "argument '+a/b:c' contains invalid characters: '/', ':'");
  auto params = ParseRule("test.S * @anyvm @anyvm deny target=vault");
  ASSERT_FALSE(params);
  EXPECT_EQ(params.error(), "invalid parameter target=vault for action deny (it takes notify=)");
  auto any = ParseRule("* * @anyvm @anyvm deny");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->ToString(), "*\t*\t@anyvm\t@anyvm\tdeny");
}

TEST(PolicyLoad, V4DollarKeywordsAreErrorsInV5Files) {
  auto p = Policy::LoadMemory({{"__main__",
                                "test.S * @anyvm @anyvm allow\n"
                                "test.S * $anyvm @anyvm allow\n"
                                "test.S * @anyvm $tag:x deny\n"
                                "test.S * @anyvm @default allow target=$adminvm\n"}});
  ASSERT_FALSE(p);
  std::vector<std::string> got;
  for (const auto& e : p.error()) got.push_back(e.ToString());
  EXPECT_THAT(got,
              ElementsAre("__main__:2: '$anyvm' is Qubes policy v4 syntax; in a v5 policy file "
                          "write '@anyvm'",
                          "__main__:3: '$tag:x' is Qubes policy v4 syntax; in a v5 policy file "
                          "write '@tag:x'",
                          "__main__:4: '$adminvm' is Qubes policy v4 syntax; in a v5 policy file "
                          "write '@adminvm'"));
  // The old per-service syntax (!compat-4.0 files) still takes them.
  auto compat =
      Policy::LoadMemory({{"__main__", "!compat-4.0\n"}}, {{"test.S", "$anyvm $anyvm allow\n"}});
  EXPECT_TRUE(compat) << compat.error()[0].ToString();
}

TEST(PolicyEval, TraceNamesEveryConsideredRule) {
  auto p = Policy::LoadMemory({{"__main__",
                                "other.S * @anyvm @anyvm allow\n"
                                "test.S * vault @anyvm allow\n"
                                "* * @anyvm @anyvm deny\n"}});
  ASSERT_TRUE(p);
  std::vector<std::string> lines;
  p->Evaluate(Req("test.S", "work", "vault"), TestSystem(),
              [&](std::string_view l) { lines.emplace_back(l); });
  ASSERT_EQ(lines.size(), 3u);  // request + rules 1 and 2; rule 0 is another service
  EXPECT_THAT(lines[1], HasSubstr("__main__:2"));
  EXPECT_THAT(lines[1], HasSubstr("source 'work' does not match 'vault'"));
  EXPECT_THAT(lines[2], HasSubstr("MATCHES"));
}

TEST(PolicyHolder, KeepsLastGoodPolicyAndDeniesWithoutOne) {
  PolicyHolder holder;
  const SystemInfo sys = TestSystem();
  Resolution r = holder.Evaluate(Req("test.S", "work", "vault"), sys);
  EXPECT_EQ(r.decision, Decision::kDeny);
  EXPECT_EQ(r.stage, Stage::kParse);

  EXPECT_FALSE(holder.Reload(Policy::LoadMemory({{"__main__", "garbage"}})));
  EXPECT_EQ(holder.Evaluate(Req("test.S", "work", "vault"), sys).decision, Decision::kDeny);
  EXPECT_EQ(holder.LastErrors().size(), 1u);

  EXPECT_TRUE(holder.Reload(Policy::LoadMemory({{"__main__", "test.S * @anyvm @anyvm allow"}})));
  EXPECT_EQ(holder.Evaluate(Req("test.S", "work", "vault"), sys).decision, Decision::kAllow);
  EXPECT_EQ(holder.generation(), 1u);

  // A broken reload leaves the good policy in force.
  EXPECT_FALSE(holder.Reload(Policy::LoadMemory({{"__main__", "test.S * @anyvm"}})));
  EXPECT_EQ(holder.Evaluate(Req("test.S", "work", "vault"), sys).decision, Decision::kAllow);
  EXPECT_EQ(holder.LastErrors().size(), 1u);
  EXPECT_EQ(holder.generation(), 1u);
}

TEST(SystemInfo, ParsesAndValidates) {
  auto sys = SystemInfo::FromJsonText(R"({"qubes": {"a": {"type": "AppVM", "uuid": "u1"}}})");
  ASSERT_TRUE(sys);
  ASSERT_NE(sys->Find("dom0"), nullptr);  // added when no AdminVM is listed
  ASSERT_NE(sys->Find("uuid:u1"), nullptr);
  EXPECT_EQ(sys->Find("uuid:u1")->name, "a");
  EXPECT_FALSE(sys->Find("a")->running);
  for (const char* bad : {R"({"qubes": {"a": {"type": "Bogus"}}})",
                          R"({"qubes": {"a": {"tags": "x"}}})",
                          R"({"qubes": {"a": {"power_state": "Flying"}}})",
                          R"({"qubes": {"a": {"default_dispvm": 3}}})", R"({"qubes": []})",
                          R"(not json)"}) {
    auto r = SystemInfo::FromJsonText(bad);
    EXPECT_FALSE(r) << bad;
  }
  auto r = SystemInfo::FromJsonText(R"({"qubes": {"a": {"type": "Bogus"}}})");
  EXPECT_THAT(r.error().ToString(), HasSubstr("qube 'a': field 'type'"));
}

}  // namespace
}  // namespace tessera::policy
