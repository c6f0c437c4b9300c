// tessera-dhcp-hook: the event script of the busybox `udhcpc` the daemon
// runs in a netvm whose uplink has no static address (docs/NETWORK.md
// "Uplink"). udhcpc runs it as `tessera-dhcp-hook EVENT` with the lease in
// its environment; it prints one JSON line on stdout, which is udhcpc's, which
// the daemon reads (net/dhcp_event.h) and acts on: the hook itself changes
// nothing in the qube.
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    static const char kUsage[] = "usage: tessera-dhcp-hook EVENT (run by udhcpc -s)\n";
    (void)!::write(2, kUsage, sizeof(kUsage) - 1);
    return 2;
  }
  nlohmann::json event{{"event", argv[1]}};
  for (const char* name : {"ip", "subnet", "router", "dns"}) {
    if (const char* value = std::getenv(name)) event[name] = value;
  }
  // Not valid UTF-8 (an invalid value): replaced, never thrown on.
  std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const char* at = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(1, at, left);
    if (n <= 0) return 1;
    at += n;
    left -= static_cast<size_t>(n);
  }
  return 0;
}
