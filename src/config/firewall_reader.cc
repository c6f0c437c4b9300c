#include "config/firewall_reader.h"

#include <array>
#include <cstdint>
#include <string_view>

#include "common/paths.h"
#include "common/text.h"
#include "config/values.h"

namespace tessera::config {

namespace {
constexpr std::string_view kRuleKeys[] = {"action", "comment",  "dsthost", "dstports",
                                          "expire", "icmptype", "proto",   "specialtarget"};
constexpr std::string_view kProtos[] = {"tcp", "udp", "icmp"};
constexpr int64_t kMaxExpire = 253402300799;  // 9999-12-31T23:59:59Z
}  // namespace

void FirewallReader::Read(const Node& value, const std::string& path,
                          std::vector<FirewallRule>& rules) {
  if (!ExpectKind(value, Kind::kArray, path, "an array of rule tables")) return;
  for (size_t i = 0; i < value.items.size(); ++i) {
    const std::string rule_path = path + "[" + std::to_string(i) + "]";
    if (auto rule = ReadRule(value.items[i], rule_path)) rules.push_back(std::move(*rule));
  }
}

std::optional<FirewallRule> FirewallReader::ReadRule(const Node& node, const std::string& path) {
  if (!ExpectKind(node, Kind::kTable, path, "a firewall rule table")) return std::nullopt;
  size_t errors_before = diagnostics_.size();
  FirewallRule rule;
  bool have_action = false;
  const Node* dstports = nullptr;
  const Node* icmptype = nullptr;
  for (const Member* member : UniqueMembers(node, path)) {
    const std::string field = JoinPath(path, member->key);
    const Node& value = member->value;
    const std::string& key = member->key;
    if (key == "action") {
      if (auto text = GetChoice(value, field, std::array<std::string_view, 2>{"accept", "drop"})) {
        rule.action = *text == "accept" ? FirewallAction::kAccept : FirewallAction::kDrop;
        have_action = true;
      } else {
        have_action = true;  // reported already; do not also say it is missing
      }
    } else if (key == "dsthost") {
      if (auto text = GetString(value, field)) {
        Result<std::string> host = NormaliseDstHost(*text);
        if (host) {
          rule.dsthost = *host;
        } else {
          Report(value.location, field, host.error().message());
        }
      }
    } else if (key == "proto") {
      if (auto text = GetChoice(value, field, kProtos)) {
        rule.proto = *text == "tcp"   ? FirewallProto::kTcp
                     : *text == "udp" ? FirewallProto::kUdp
                                      : FirewallProto::kIcmp;
      }
    } else if (key == "dstports") {
      dstports = &value;
      if (value.kind == Kind::kInteger) {
        if (auto port = GetInteger(value, field, 0, 65535, "")) {
          rule.dstports = PortRange{static_cast<uint16_t>(*port), static_cast<uint16_t>(*port)};
        }
      } else if (value.kind == Kind::kString) {
        if (auto text = GetString(value, field)) {
          Result<PortRange> range = ParsePortRange(*text);
          if (range) {
            rule.dstports = *range;
          } else {
            Report(value.location, field, range.error().message());
          }
        }
      } else {
        Report(value.location, field,
               "expected a port (integer) or a range string \"N-M\", got " +
                   std::string(KindName(value)));
      }
    } else if (key == "icmptype") {
      icmptype = &value;
      if (auto type = GetInteger(value, field, 0, 255, "")) {
        rule.icmptype = static_cast<uint8_t>(*type);
      }
    } else if (key == "specialtarget") {
      if (GetChoice(value, field, std::array<std::string_view, 1>{"dns"})) {
        rule.specialtarget_dns = true;
      }
    } else if (key == "expire") {
      if (auto when = GetInteger(value, field, 0, kMaxExpire, "seconds since the epoch")) {
        rule.expire = *when;
      }
    } else if (key == "comment") {
      if (auto text = GetString(value, field)) rule.comment = *text;
    } else {
      UnknownKey(*member, field, kRuleKeys);
    }
  }
  if (!have_action) {
    Report(node.location, JoinPath(path, "action"),
           "missing action: a firewall rule needs action = \"accept\" or \"drop\"");
  }
  if (dstports != nullptr && rule.proto != FirewallProto::kTcp &&
      rule.proto != FirewallProto::kUdp) {
    Report(dstports->location, JoinPath(path, "dstports"),
           "dstports needs proto = \"tcp\" or \"udp\"");
  }
  if (icmptype != nullptr && rule.proto != FirewallProto::kIcmp) {
    Report(icmptype->location, JoinPath(path, "icmptype"), "icmptype needs proto = \"icmp\"");
  }
  if (diagnostics_.size() != errors_before) return std::nullopt;
  return rule;
}

}  // namespace tessera::config
