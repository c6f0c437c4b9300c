#include "net/host_nat.h"

namespace tessera::net {

namespace {
constexpr const char* kTable = "inet tessera-host-nat";
}  // namespace

std::string HostNatIfname(uint32_t netvm_address) {
  return "tsnat" + std::to_string(netvm_address & 0xff);
}

std::string RenderHostNatTable() {
  const std::string range = kHostNatRange.ToString();
  std::string t = kTable;
  return "table " + t + "\ndelete table " + t + "\ntable " + t +
         " {\n"
         // The host is not the netvm's to reach: answers only.
         "  chain input {\n"
         "    type filter hook input priority filter; policy accept;\n"
         "    iifname \"tsnat*\" ct state established,related accept\n"
         "    iifname \"tsnat*\" drop\n"
         "  }\n"
         "  chain forward {\n"
         "    type filter hook forward priority filter; policy accept;\n"
         "    iifname \"tsnat*\" oifname \"tsnat*\" drop\n"
         "    iifname \"tsnat*\" ip saddr != " +
         range +
         " drop\n"
         "    oifname \"tsnat*\" ct state established,related accept\n"
         "    oifname \"tsnat*\" drop\n"
         "  }\n"
         "  chain postrouting {\n"
         "    type nat hook postrouting priority srcnat; policy accept;\n"
         "    ip saddr " +
         range +
         " oifname != \"tsnat*\" masquerade\n"
         "  }\n"
         "}\n";
}

std::string RemoveHostNatTable() {
  return std::string("table ") + kTable + "\ndelete table " + kTable + "\n";
}

std::vector<uint32_t> NameserversOf(std::string_view resolv_conf) {
  std::vector<uint32_t> out;
  size_t at = 0;
  while (at < resolv_conf.size()) {
    size_t end = resolv_conf.find('\n', at);
    if (end == std::string_view::npos) end = resolv_conf.size();
    std::string_view line = resolv_conf.substr(at, end - at);
    at = end + 1;
    constexpr std::string_view kKey = "nameserver";
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    if (line.empty() || (line.front() != ' ' && line.front() != '\t')) continue;
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) continue;
    line.remove_prefix(start);
    size_t stop = line.find_first_of(" \t\r#");
    auto address = ParseIpv4(line.substr(0, stop));
    if (!address || (*address >> 24) == 127) continue;  // IPv6, or the host's own
    out.push_back(*address);
  }
  return out;
}

}  // namespace tessera::net
