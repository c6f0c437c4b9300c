// Validation: a Node tree (from any format) -> System, reporting every problem.
//
// Two passes. The first reads each qube on its own (types, ranges, syntax,
// unknown keys) into a Draft that remembers where each reference came from. The
// second checks what needs the whole system: references, class rules, netvm
// cycles, unique UUIDs. Only a document without a single diagnostic becomes a
// System.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <span>

#include "common/names.h"
#include "common/paths.h"
#include "common/text.h"
#include "config/credentials_reader.h"
#include "config/document.h"
#include "config/firewall_reader.h"
#include "config/node_reader.h"
#include "config/template_source_reader.h"
#include "config/values.h"

namespace tessera::config {
namespace {

using Kind = Node::Kind;

constexpr std::string_view kTopKeys[] = {"default_dispvm", "network_range", "policy_dir", "qubes",
                                         "rpc"};
constexpr std::string_view kRpcKeys[] = {"ask_timeout", "max_calls_per_qube"};
constexpr std::string_view kQubeKeys[] = {"autostart",
                                          "backend",
                                          "class",
                                          "cpus",
                                          "credentials",
                                          "default_dispvm",
                                          "default_user",
                                          "features",
                                          "firewall",
                                          "firewall_runtime",
                                          "idle_timeout",
                                          "io_max",
                                          "io_weight",
                                          "label",
                                          "memory",
                                          "netvm",
                                          "nix",
                                          "private_size",
                                          "provides_network",
                                          "source",
                                          "tags",
                                          "template",
                                          "uplink",
                                          "uplink_address",
                                          "uplink_dns",
                                          "uplink_gateway",
                                          "uuid"};
constexpr std::string_view kIoMaxKeys[] = {"read_bps", "read_iops", "write_bps", "write_iops"};
constexpr std::string_view kLabels[] = {"red",  "orange", "yellow", "green",
                                        "gray", "blue",   "purple", "black"};
constexpr std::string_view kClasses[] = {"template", "app", "disposable-template", "disposable",
                                         "standalone"};

constexpr int64_t kMinMemoryMib = 32;
constexpr int64_t kMaxMemoryMib = 1048576;
constexpr uint64_t kDefaultMemoryMib = 1024;
constexpr uint64_t kMinPrivateMib = 32;           // room for ext4's journal
constexpr uint64_t kMaxPrivateMib = 16ull << 20;  // 16 TiB
constexpr uint64_t kDefaultPrivateMib = 2048;     // as Qubes
constexpr int64_t kMaxCpus = 1024;
constexpr int64_t kMaxIdleTimeout = 7 * 24 * 3600;
constexpr int64_t kMaxIoWeight = 10000;
constexpr int64_t kMaxIoRate = INT64_MAX;

// Whether "A.B.C.D/N" overlaps 10.139.0.0/16 (the virtual DNS addresses
// and the host-nat links: docs/NETWORK.md).
bool RangeHoldsReserved(const std::string& range) {
  size_t slash = range.find('/');
  int prefix = std::stoi(range.substr(slash + 1));
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (std::sscanf(range.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4) return false;
  uint32_t net = (a << 24) | (b << 16) | (c << 8) | d;
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  uint32_t reserved = (10u << 24) | (139u << 16);
  // Two networks overlap when the shorter prefix's mask matches both.
  uint32_t common = prefix < 16 ? mask : ~uint32_t{0} << 16;
  return (net & common) == (reserved & common);
}

std::string_view Article(QubeClass klass) {
  return klass == QubeClass::kApp ? "an" : "a";
}

std::string ClassPhrase(QubeClass klass) {
  return std::string(Article(klass)) + " " + std::string(ToString(klass)) + " qube";
}

struct Ref {
  std::string name;
  Location location;
  std::string path;
};

struct Draft {
  Qube qube;
  Location location;  // of the qube's key
  std::string path;   // "qubes.work"
  std::optional<Ref> template_ref;
  std::optional<Ref> netvm_ref;
  std::optional<Ref> dispvm_ref;
  bool dispvm_none = false;
  bool class_valid = true;  // an invalid class skips the class rules (no follow-on errors)
  std::optional<Ref> source;  // name = the source text
  std::optional<Ref> nix;     // the `nix` table was given
  std::optional<Ref> idle_timeout;
  std::optional<Ref> uuid;
  std::optional<Ref> uplink;  // the first uplink* key given (for cross-checks)
};

class Builder : public NodeReader {
 public:
  Builder(const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : NodeReader(source, diagnostics), first_(diagnostics.size()) {}

  std::optional<System> Run(const Node& root) {
    system_.policy_dir = std::string(kDefaultPolicyDir);
    if (ExpectKind(root, Kind::kTable, "", "the document")) {
      for (const Member* member : UniqueMembers(root, "")) {
        const std::string path = JoinPath("", member->key);
        if (member->key == "policy_dir") {
          ReadPolicyDir(*member, path);
        } else if (member->key == "default_dispvm") {
          if (auto name = GetString(member->value, path)) {
            if (*name != "none") system_dispvm_ = Ref{*name, member->value.location, path};
          }
        } else if (member->key == "network_range") {
          if (auto text = GetString(member->value, path)) {
            // /8../24: room for the qubes, and a vif name within IFNAMSIZ.
            auto range = NormaliseIpv4Network(*text, 8, 24);
            if (range && RangeHoldsReserved(*range)) {
              Report(member->value.location, path,
                     "network_range " + *range +
                         " overlaps 10.139.0.0/16 (the qubes' virtual DNS addresses and host-nat "
                         "links)");
            } else if (range) {
              system_.network_range = *range;
            } else {
              Report(member->value.location, path, range.error().message());
            }
          }
        } else if (member->key == "rpc") {
          ReadRpc(*member, path);
        } else if (member->key == "qubes") {
          if (ExpectKind(member->value, Kind::kTable, path, "a table of qubes")) {
            for (const Member* qube : UniqueMembers(member->value, path)) ReadQube(*qube, path);
          }
        } else {
          UnknownKey(*member, path, kTopKeys);
        }
      }
    }
    CrossCheck();

    // Report in document order; without positions (Nix), in path order. Stable,
    // so ties keep the order they were found in.
    std::stable_sort(diagnostics_.begin() + static_cast<std::ptrdiff_t>(first_),
                     diagnostics_.end(), [](const Diagnostic& a, const Diagnostic& b) {
                       if (a.line != b.line || a.column != b.column) {
                         return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                       }
                       return a.line == 0 && a.path < b.path;
                     });
    if (diagnostics_.size() != first_) return std::nullopt;

    for (Draft& draft : drafts_) system_.qubes.push_back(std::move(draft.qube));
    std::sort(system_.qubes.begin(), system_.qubes.end(),
              [](const Qube& a, const Qube& b) { return a.name < b.name; });
    return std::move(system_);
  }

 private:
  void ReadRpc(const Member& member, const std::string& path) {
    if (!ExpectKind(member.value, Kind::kTable, path, "a table")) return;
    for (const Member* m : UniqueMembers(member.value, path)) {
      const std::string key_path = JoinPath(path, m->key);
      if (m->key == "max_calls_per_qube") {
        if (auto n = GetInteger(m->value, key_path, 1, 4096, "")) {
          system_.rpc.max_calls_per_qube = static_cast<uint32_t>(*n);
        }
      } else if (m->key == "ask_timeout") {
        if (auto n = GetInteger(m->value, key_path, 1, 3600, "seconds")) {
          system_.rpc.ask_timeout_s = static_cast<uint32_t>(*n);
        }
      } else {
        UnknownKey(*m, key_path, kRpcKeys);
      }
    }
  }

  void ReadPolicyDir(const Member& member, const std::string& path) {
    std::optional<std::string> dir = GetString(member.value, path);
    if (!dir) return;
    if (dir->empty() || (*dir)[0] != '/') {
      Report(member.value.location, path, "policy_dir must be an absolute path");
      return;
    }
    system_.policy_dir = *dir;
  }

  void ReadQube(const Member& member, const std::string& parent) {
    Draft draft;
    draft.path = JoinPath(parent, member.key);
    draft.location = member.key_location;
    draft.qube.name = member.key;
    if (Status name_ok = CheckQubeName(member.key); !name_ok) {
      Report(member.key_location, draft.path, name_ok.error().message());
    }
    if (!ExpectKind(member.value, Kind::kTable, draft.path, "a table describing the qube")) return;
    Qube& qube = draft.qube;
    for (const Member* field : UniqueMembers(member.value, draft.path)) {
      const std::string path = JoinPath(draft.path, field->key);
      const Node& value = field->value;
      const std::string& key = field->key;
      if (key == "class") {
        if (auto text = GetChoice(value, path, kClasses)) {
          qube.klass = *ParseQubeClass(*text);
        } else {
          draft.class_valid = false;
        }
      } else if (key == "template") {
        if (auto name = GetString(value, path)) draft.template_ref = Ref{*name, value.location, path};
      } else if (key == "netvm") {
        if (auto name = GetString(value, path)) {
          if (*name != "none") draft.netvm_ref = Ref{*name, value.location, path};
        }
      } else if (key == "default_dispvm") {
        if (auto name = GetString(value, path)) {
          if (*name == "none") {
            draft.dispvm_none = true;
          } else {
            draft.dispvm_ref = Ref{*name, value.location, path};
          }
        }
      } else if (key == "label") {
        if (auto label = GetChoice(value, path, kLabels)) qube.label = *label;
      } else if (key == "default_user") {
        if (auto user = GetString(value, path)) {
          if (IsUserSpec(*user)) {
            qube.default_user = *user;
          } else {
            Report(value.location, path,
                   "default_user must be a user name ([a-z_][a-z0-9_-]*, at most 32 "
                   "characters) or UID[:GID], got \"" +
                       *user + "\"");
          }
        }
      } else if (key == "memory") {
        if (auto mib = GetInteger(value, path, kMinMemoryMib, kMaxMemoryMib, "MiB")) {
          qube.memory_mib = static_cast<uint64_t>(*mib);
        }
      } else if (key == "private_size") {
        ReadPrivateSize(value, path, qube);
      } else if (key == "cpus") {
        if (auto cpus = GetInteger(value, path, 1, kMaxCpus, "")) {
          qube.cpus = static_cast<uint32_t>(*cpus);
        }
      } else if (key == "io_weight") {
        if (auto weight = GetInteger(value, path, 1, kMaxIoWeight, "")) {
          qube.io_weight = static_cast<uint32_t>(*weight);
        }
      } else if (key == "io_max") {
        ReadIoMax(value, path, qube.io_max);
      } else if (key == "tags") {
        ReadTags(value, path, qube.tags);
      } else if (key == "autostart") {
        if (auto flag = GetBool(value, path)) qube.autostart = *flag;
      } else if (key == "provides_network") {
        if (auto flag = GetBool(value, path)) qube.provides_network = *flag;
      } else if (key == "idle_timeout") {
        draft.idle_timeout = Ref{"", value.location, path};
        if (auto seconds = GetInteger(value, path, 0, kMaxIdleTimeout, "seconds")) {
          qube.idle_timeout = static_cast<uint32_t>(*seconds);
        }
      } else if (key == "features") {
        ReadFeatures(value, path, qube.features);
      } else if (key == "credentials") {
        CredentialsReader(source_, diagnostics_).Read(value, path, qube.credentials);
      } else if (key == "firewall") {
        FirewallReader(source_, diagnostics_).Read(value, path, qube.firewall);
      } else if (key == "firewall_runtime") {
        if (auto text =
                GetChoice(value, path, std::array<std::string_view, 2>{"keep", "reset-on-apply"})) {
          qube.reset_runtime_firewall = *text == "reset-on-apply";
        }
      } else if (key == "backend") {
        if (auto text = GetChoice(value, path, std::array<std::string_view, 2>{"cell", "vm"})) {
          if (*text == "vm") {
            Report(value.location, path, "the vm backend is not available yet (use \"cell\")");
          }
          qube.backend = Backend::kCell;
        }
      } else if (key == "uuid") {
        if (auto text = GetString(value, path)) {
          Result<std::string> uuid = NormaliseUuid(*text);
          if (!uuid) {
            Report(value.location, path, uuid.error().message());
          } else {
            qube.uuid = *uuid;
            draft.uuid = Ref{*uuid, value.location, path};
          }
        }
      } else if (key == "source") {
        if (auto text = TemplateSourceReader(source_, diagnostics_).ReadSource(value, path)) {
          draft.source = Ref{*text, value.location, path};
        }
      } else if (key == "nix") {
        draft.nix = Ref{"", value.location, path};
        qube.nix = TemplateSourceReader(source_, diagnostics_).ReadNix(value, path);
      } else if (key == "uplink" || key == "uplink_address" || key == "uplink_gateway" ||
                 key == "uplink_dns") {
        ReadUplink(key, value, path, draft);
      } else {
        UnknownKey(*field, path, kQubeKeys);
      }
    }
    if (qube.memory_mib == 0) qube.memory_mib = kDefaultMemoryMib;
    if (qube.private_size_mib == 0) qube.private_size_mib = kDefaultPrivateMib;
    if (qube.uuid.empty()) qube.uuid = DeriveUuid(qube.name);
    drafts_.push_back(std::move(draft));
  }

  // An integer of MiB (as `memory`) or a string with a binary unit ("20G").
  void ReadPrivateSize(const Node& value, const std::string& path, Qube& qube) {
    std::optional<uint64_t> mib;
    if (value.kind == Kind::kString) {
      mib = ParseSizeMib(value.string);
      if (!mib) {
        Report(value.location, path,
               "private_size " + QuoteValue(value.string) +
                   ": expected a size like \"2G\", \"512M\" or a number of MiB");
        return;
      }
    } else if (value.kind == Kind::kInteger && !value.integer_overflow && value.integer >= 0) {
      mib = static_cast<uint64_t>(value.integer);
    } else if (value.kind != Kind::kInteger) {
      Report(value.location, path,
             "private_size: expected a size like \"2G\" or a number of MiB, got " +
                 std::string(KindName(value)));
      return;
    }
    if (!mib || *mib < kMinPrivateMib || *mib > kMaxPrivateMib) {
      Report(value.location, path,
             "private_size must be between 32 MiB and 16 TiB, got " +
                 (mib                                            ? std::to_string(*mib) + " MiB"
                  : !value.integer_overflow && value.integer < 0 ? std::string("a negative size")
                                                                 : std::string("a larger number")));
      return;
    }
    qube.private_size_mib = *mib;
  }

  void ReadIoMax(const Node& value, const std::string& path, IoMax& io_max) {
    if (!ExpectKind(value, Kind::kTable, path, "a table of I/O limits")) return;
    for (const Member* member : UniqueMembers(value, path)) {
      const std::string field = JoinPath(path, member->key);
      uint64_t* target = member->key == "read_bps"     ? &io_max.read_bps
                         : member->key == "write_bps"  ? &io_max.write_bps
                         : member->key == "read_iops"  ? &io_max.read_iops
                         : member->key == "write_iops" ? &io_max.write_iops
                                                       : nullptr;
      if (target == nullptr) {
        UnknownKey(*member, field, kIoMaxKeys);
        continue;
      }
      bool bytes = member->key.ends_with("_bps");
      if (auto n = GetInteger(member->value, field, 0, kMaxIoRate,
                              bytes ? "bytes/s, 0 = unlimited" : "operations/s, 0 = unlimited")) {
        *target = static_cast<uint64_t>(*n);
      }
    }
  }

  void ReadTags(const Node& value, const std::string& path, std::vector<std::string>& tags) {
    if (!ExpectKind(value, Kind::kArray, path, "an array of strings")) return;
    for (size_t i = 0; i < value.items.size(); ++i) {
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      std::optional<std::string> tag = GetString(value.items[i], item_path);
      if (!tag) continue;
      if (Status ok = CheckTag(*tag); !ok) {
        Report(value.items[i].location, item_path, ok.error().message());
        continue;
      }
      tags.push_back(*tag);
    }
    std::sort(tags.begin(), tags.end());
    tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  }

  void ReadUplink(const std::string& key, const Node& value, const std::string& path,
                  Draft& draft) {
    Qube& qube = draft.qube;
    if (!draft.uplink) draft.uplink = Ref{key, value.location, path};
    auto check = [&](Result<std::string> normal, std::string& into) {
      if (normal) {
        into = *normal;
      } else {
        Report(value.location, path, normal.error().message());
      }
    };
    if (key == "uplink_dns") {
      if (!ExpectKind(value, Kind::kArray, path, "an array of IPv4 addresses")) return;
      for (size_t i = 0; i < value.items.size(); ++i) {
        const std::string item_path = path + "[" + std::to_string(i) + "]";
        std::optional<std::string> text = GetString(value.items[i], item_path);
        if (!text) continue;
        Result<std::string> address = NormaliseIpv4Address(*text);
        if (!address) {
          Report(value.items[i].location, item_path, address.error().message());
        } else {
          qube.uplink_dns.push_back(*address);
        }
      }
      return;
    }
    std::optional<std::string> text = GetString(value, path);
    if (!text) return;
    if (key == "uplink") {
      if (*text == kHostNat) {
        qube.uplink = *text;
      } else if (Status ok = CheckIfname(*text); !ok) {
        Report(value.location, path, ok.error().message());
      } else if (text->rfind("vif", 0) == 0) {
        Report(value.location, path,
               "uplink " + QuoteValue(*text) +
                   ": names starting with \"vif\" are the netvms' client links");
      } else {
        qube.uplink = *text;
      }
    } else if (key == "uplink_address") {
      check(NormaliseIpv4Interface(*text), qube.uplink_address);
    } else {
      check(NormaliseIpv4Address(*text), qube.uplink_gateway);
    }
  }

  void ReadFeatures(const Node& value, const std::string& path,
                    std::map<std::string, std::string>& features) {
    if (!ExpectKind(value, Kind::kTable, path, "a table of strings")) return;
    for (const Member* feature : UniqueMembers(value, path)) {
      const std::string feature_path = JoinPath(path, feature->key);
      if (Status ok = CheckFeatureName(feature->key); !ok) {
        Report(feature->key_location, feature_path, ok.error().message());
        continue;
      }
      if (feature->value.kind != Kind::kString) {
        Report(feature->value.location, feature_path,
               "expected a string, got " + std::string(KindName(feature->value)) +
                   " (feature values are strings; quote it, e.g. \"1\")");
        continue;
      }
      if (auto text = GetString(feature->value, feature_path)) features[feature->key] = *text;
    }
  }

  // Looks up a reference; reports it if it names no qube.
  const Draft* Resolve(const Ref& ref) {
    auto it = by_name_.find(ref.name);
    if (it != by_name_.end()) return it->second;
    std::string hint;
    // Hints cost an edit distance per qube; bound the total for hostile input.
    if (suggestion_budget_ > 0 && drafts_.size() <= 1000) {
      --suggestion_budget_;
      std::vector<std::string_view> names;
      for (const Draft& draft : drafts_) names.push_back(draft.qube.name);
      hint = DidYouMean(ref.name, names);
    }
    Report(ref.location, ref.path, "no qube named " + QuoteValue(ref.name) + hint);
    return nullptr;
  }

  void CheckDispvm(const Ref& ref) {
    const Draft* target = Resolve(ref);
    if (target != nullptr && target->qube.klass != QubeClass::kDisposableTemplate) {
      Report(ref.location, ref.path,
             QuoteValue(ref.name) + " is " + ClassPhrase(target->qube.klass) +
                 "; default_dispvm must name a disposable-template qube");
    }
  }

  void CrossCheck() {
    for (const Draft& draft : drafts_) by_name_[draft.qube.name] = &draft;

    std::map<std::string, const Draft*> uplinks;  // host interface -> the qube that takes it
    for (Draft& draft : drafts_) {
      Qube& qube = draft.qube;
      const QubeClass klass = qube.klass;
      const bool needs_template = klass == QubeClass::kApp ||
                                  klass == QubeClass::kDisposableTemplate ||
                                  klass == QubeClass::kDisposable;
      if (!draft.class_valid) {
        // Reported already; only check that a named template exists.
        if (draft.template_ref) Resolve(*draft.template_ref);
      } else if (draft.template_ref && !needs_template && klass != QubeClass::kStandalone) {
        Report(draft.template_ref->location, draft.template_ref->path,
               ClassPhrase(klass) + " has no template (remove this key)");
      } else if (!draft.template_ref && needs_template) {
        Report(draft.location, JoinPath(draft.path, "template"),
               "missing template: " + ClassPhrase(klass) + " needs a template = \"...\"" +
                   (klass == QubeClass::kDisposable ? " (a disposable-template qube)"
                                                    : " (a template qube)"));
      } else if (draft.template_ref) {
        const Draft* target = Resolve(*draft.template_ref);
        const QubeClass wanted = klass == QubeClass::kDisposable ? QubeClass::kDisposableTemplate
                                                                 : QubeClass::kTemplate;
        if (target != nullptr && target->qube.klass != wanted) {
          Report(draft.template_ref->location, draft.template_ref->path,
                 QuoteValue(draft.template_ref->name) + " is " + ClassPhrase(target->qube.klass) +
                     "; the template of " + ClassPhrase(klass) + " must be " + ClassPhrase(wanted));
        } else if (target != nullptr && klass == QubeClass::kStandalone && target->source &&
                   target->source->name == "nix") {
          Report(draft.template_ref->location, draft.template_ref->path,
                 QuoteValue(draft.template_ref->name) +
                     " is built by Nix (source = \"nix\"): a standalone qube cannot be copied "
                     "from it (its root is a store closure, not a tree)");
        } else if (target != nullptr) {
          qube.template_name = draft.template_ref->name;
        }
      }

      if (draft.source && klass != QubeClass::kTemplate && draft.class_valid) {
        Report(draft.source->location, draft.source->path,
               "source applies only to template qubes (this is " + ClassPhrase(klass) + ")");
      }
      if (klass == QubeClass::kTemplate) {
        qube.template_source = draft.source ? draft.source->name : "busybox";
      }
      bool nix_source = draft.source && draft.source->name == "nix";
      if (nix_source && !draft.nix) {
        Report(draft.source->location, draft.source->path,
               "source = \"nix\" needs the nix table { root, closure } (the NixOS module "
               "writes it)");
      } else if (draft.nix && !nix_source) {
        Report(draft.nix->location, draft.nix->path,
               "nix applies only to a template with source = \"nix\"");
        qube.nix.reset();
      }
      if (draft.idle_timeout && draft.class_valid && klass != QubeClass::kDisposable &&
          klass != QubeClass::kDisposableTemplate) {
        Report(draft.idle_timeout->location, draft.idle_timeout->path,
               "idle_timeout applies only to disposable and disposable-template qubes");
      }

      if (draft.netvm_ref) {
        if (draft.netvm_ref->name == qube.name) {
          Report(draft.netvm_ref->location, draft.netvm_ref->path,
                 "a qube cannot be its own netvm");
        } else if (const Draft* target = Resolve(*draft.netvm_ref)) {
          if (!target->qube.provides_network) {
            Report(draft.netvm_ref->location, draft.netvm_ref->path,
                   QuoteValue(target->qube.name) +
                       " does not provide network (set provides_network = true on it)");
          } else {
            qube.netvm = target->qube.name;
          }
        }
      }

      if (draft.uplink) CheckUplink(draft, uplinks);

      if (draft.dispvm_ref) {
        CheckDispvm(*draft.dispvm_ref);
        qube.default_dispvm = draft.dispvm_ref->name;
      } else if (!draft.dispvm_none && system_dispvm_) {
        qube.default_dispvm = system_dispvm_->name;
      }
    }
    if (system_dispvm_) {
      CheckDispvm(*system_dispvm_);
      system_.default_dispvm = system_dispvm_->name;
    }

    std::map<std::string, const Draft*> uuids;
    for (const Draft& draft : drafts_) {
      auto [it, inserted] = uuids.emplace(draft.qube.uuid, &draft);
      if (!inserted) {
        const Ref* at = draft.uuid ? &*draft.uuid : it->second->uuid ? &*it->second->uuid : nullptr;
        Report(at ? at->location : draft.location, at ? at->path : draft.path,
               "uuid " + draft.qube.uuid + " is used by both " + QuoteValue(it->second->qube.name) +
                   " and " + QuoteValue(draft.qube.name));
      }
    }
    CheckNetvmCycles();
  }

  // The uplink keys belong to a provides_network qube without a netvm, and
  // a host interface can be the uplink of one qube only.
  void CheckUplink(const Draft& draft, std::map<std::string, const Draft*>& uplinks) {
    const Qube& qube = draft.qube;
    const Ref& at = *draft.uplink;
    if (!qube.provides_network) {
      Report(at.location, at.path,
             at.name + " applies only to a qube with provides_network = true");
    } else if (draft.netvm_ref) {
      Report(at.location, at.path,
             at.name + " applies only to a qube without a netvm (its netvm is its uplink)");
    } else if (qube.klass != QubeClass::kApp && qube.klass != QubeClass::kStandalone) {
      Report(at.location, at.path,
             at.name + " applies only to app and standalone qubes (one qube holds an uplink)");
    } else if (qube.uplink.empty()) {
      // uplink itself was bad (reported) or missing.
      if (at.name != "uplink") {
        Report(at.location, at.path, at.name + " needs uplink (the host interface to use)");
      }
    } else if (qube.uplink == kHostNat) {
      if (!qube.uplink_address.empty() || !qube.uplink_gateway.empty()) {
        Report(at.location, at.path,
               "uplink = \"host-nat\" takes no uplink_address or uplink_gateway (the daemon "
               "addresses the link to the host)");
      }
    } else if (qube.uplink_address.empty() && !qube.uplink_gateway.empty()) {
      Report(at.location, at.path,
             "uplink_gateway needs uplink_address (without one, DHCP gives both)");
    } else if (auto [it, fresh] = uplinks.emplace(qube.uplink, &draft); !fresh) {
      Report(at.location, at.path,
             "host interface " + QuoteValue(qube.uplink) + " is already the uplink of " +
                 QuoteValue(it->second->qube.name));
    }
  }

  // Each qube has at most one netvm, so following netvm links from any qube either
  // ends or enters a cycle. One walk per qube, never revisiting a finished one
  // (linear); every cycle is reported once, at its smallest name.
  void CheckNetvmCycles() {
    std::map<std::string_view, std::string_view> next;
    for (const Draft& draft : drafts_) {
      if (draft.qube.netvm) next[draft.qube.name] = *draft.qube.netvm;
    }
    enum class State { kOnPath, kDone };
    std::map<std::string_view, State> state;
    for (const auto& [start, unused] : next) {
      if (state.count(start) != 0) continue;
      std::vector<std::string_view> path;
      std::string_view current = start;
      while (true) {
        auto seen = state.find(current);
        if (seen != state.end()) {
          if (seen->second == State::kOnPath) ReportCycle(path, current);
          break;
        }
        state[current] = State::kOnPath;
        path.push_back(current);
        auto it = next.find(current);
        if (it == next.end()) break;
        current = it->second;
      }
      for (std::string_view name : path) state[name] = State::kDone;
    }
  }

  // `path` ends in a walk that came back to `entry`; the cycle is entry..end.
  void ReportCycle(const std::vector<std::string_view>& path, std::string_view entry) {
    std::vector<std::string_view> cycle(std::find(path.begin(), path.end(), entry), path.end());
    auto smallest = std::min_element(cycle.begin(), cycle.end());
    std::rotate(cycle.begin(), smallest, cycle.end());
    std::string text;
    for (std::string_view name : cycle) text += std::string(name) + " -> ";
    text += std::string(cycle.front());
    const Draft* draft = by_name_.at(std::string(cycle.front()));
    Report(draft->netvm_ref->location, draft->netvm_ref->path, "netvm cycle: " + text);
  }

  const size_t first_;
  System system_;
  std::optional<Ref> system_dispvm_;
  std::vector<Draft> drafts_;
  std::map<std::string, const Draft*> by_name_;
  int suggestion_budget_ = 50;
};

}  // namespace

std::optional<System> BuildSystem(const Node& root, const SourceInfo& source,
                                  std::vector<Diagnostic>& diagnostics) {
  return Builder(source, diagnostics).Run(root);
}

}  // namespace tessera::config
