#include "net/dhcp_event.h"

#include <nlohmann/json.hpp>

#include "net/address.h"

namespace tessera::net {

namespace {

std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t start = text.find_first_not_of(' ', at);
    if (start == std::string_view::npos) break;
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    at = end;
  }
  return out;
}

Result<uint32_t> Unicast(std::string_view field, std::string_view text) {
  auto address = ParseIpv4(text);
  if (!address) return Err(std::string(field) + ": " + address.error().message());
  if (!IsUsableUnicast(*address)) {
    return Err(std::string(field) + ": " + std::string(text) + " is not a usable unicast address");
  }
  return *address;
}

// A field that must be a string when present; "" when absent.
Result<std::string> Field(const nlohmann::json& event, const char* name) {
  auto it = event.find(name);
  if (it == event.end()) return std::string();
  if (!it->is_string()) return Err(std::string(name) + ": expected a string");
  return it->get<std::string>();
}

}  // namespace

bool IsUsableUnicast(uint32_t address) {
  const uint32_t first = address >> 24;
  if (first == 0 || first == 127 || first >= 224) return false;
  if ((address >> 16) == ((169u << 8) | 254u)) return false;  // link-local
  if ((address >> 16) == ((10u << 8) | 139u)) return false;   // Qubes' virtual addresses
  return true;
}

Result<DhcpEvent> ParseDhcpEvent(std::string_view line) {
  if (line.size() > kMaxDhcpEventLine) return Err("DHCP event: line too long");
  auto event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object()) return Err("DHCP event: not a JSON object");
  DhcpEvent out;
  out.event = TRY(Field(event, "event"));
  if (out.event == "deconfig" || out.event == "leasefail" || out.event == "nak") return out;
  if (out.event != "bound" && out.event != "renew") {
    return Err("DHCP event: unknown event \"" + out.event.substr(0, 32) + "\"");
  }
  DhcpLease lease;
  const std::string ip = TRY(Field(event, "ip"));
  lease.address = TRY(Unicast("ip", ip));
  const std::string subnet = TRY(Field(event, "subnet"));
  if (!subnet.empty()) {
    auto mask = ParseIpv4(subnet);
    if (!mask) return Err("subnet: " + mask.error().message());
    int prefix = 0;
    while (prefix < 32 && (*mask & (uint32_t{1} << (31 - prefix))) != 0) ++prefix;
    const uint32_t expect = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
    if (*mask != expect || prefix < 8)
      return Err("subnet: " + subnet + " is not a mask of /8 to /32");
    lease.prefix = prefix;
  }
  const std::string router = TRY(Field(event, "router"));
  auto routers = Words(router);
  if (!routers.empty()) lease.router = TRY(Unicast("router", routers.front()));
  const std::string dns_list = TRY(Field(event, "dns"));
  for (std::string_view dns : Words(dns_list)) {
    if (lease.dns.size() == kMaxDhcpResolvers) break;
    lease.dns.push_back(TRY(Unicast("dns", dns)));
  }
  out.lease = lease;
  return out;
}

}  // namespace tessera::net
