// tessera-updates-proxy: how templates, which have no network, reach their
// package mirrors (Qubes' qubes.UpdatesProxy; docs/NETWORK.md "Template
// updates"). Two roles in one static tool:
//
//   tessera-updates-proxy forward [--port N]   in a template (the daemon starts
//       it there): listens on 127.0.0.1:N (8082, as Qubes) and turns each
//       connection into a call `tessera-call @default qubes.UpdatesProxy`,
//       which the policy allows for templates only (to the netvm that serves
//       updates). apt's `Acquire::http::Proxy` and `http_proxy` point here.
//   qubes.UpdatesProxy (the service)           in the updates netvm: an HTTP
//       proxy for one client connection on stdin/stdout: `GET http://host/…`
//       (any method with an absolute http URI, port 80) or `CONNECT host:443`,
//       to an address or a name resolved by the qube's resolvers; never to
//       loopback, Qubes' ranges (10.137/16, 10.139/16), link-local or
//       multicast.
//
// Refused requests get an HTTP error status, never a connection elsewhere.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "agent/fd_io.h"
#include "agent/qube_tool.h"
#include "common/unique_fd.h"
#include "net/resolve.h"

namespace {

using tessera::UniqueFd;
using tessera::agent::WriteFull;

constexpr uint16_t kDefaultPort = 8082;
constexpr size_t kMaxHead = 16 * 1024;
constexpr int kConnectTimeoutMs = 10000;

// ---------------------------------------------------------------------------
// forward (in a template)

int Forward(uint16_t port) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener.get(), 64) != 0) {
    std::fprintf(stderr, "tessera-updates-proxy: cannot listen on 127.0.0.1:%u: %s\n", port,
                 std::strerror(errno));
    return 1;
  }
  ::signal(SIGCHLD, SIG_IGN);  // children are reaped by the kernel
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    std::fprintf(stderr, "tessera-updates-proxy: cannot find itself: %s\n", std::strerror(errno));
    return 1;
  }
  exe[n] = '\0';
  std::string self(exe);
  std::string call = self.substr(0, self.rfind('/')) + "/tessera-call";
  for (;;) {
    int client = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        ::usleep(100 * 1000);  // out of descriptors: wait for children to end
        continue;
      }
      std::fprintf(stderr, "tessera-updates-proxy: accept: %s\n", std::strerror(errno));
      return 1;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(client, 0);
      ::dup2(client, 1);
      const char* argv[] = {call.c_str(), "@default", "qubes.UpdatesProxy", nullptr};
      ::execv(call.c_str(), const_cast<char* const*>(argv));
      _exit(125);
    }
    ::close(client);
  }
}

// ---------------------------------------------------------------------------
// The service (in the updates netvm)

void Answer(int status, const char* reason, const std::string& detail = "") {
  std::string body =
      std::to_string(status) + " " + reason + (detail.empty() ? "" : ": " + detail) + "\n";
  std::string head =
      "HTTP/1.1 " + std::to_string(status) + " " + reason +
      "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n";
  (void)WriteFull(1, head.data(), head.size());
  (void)WriteFull(1, body.data(), body.size());
}

// The qube's resolvers (/etc/resolv.conf), else Qubes' virtual ones.
std::vector<uint32_t> Resolvers() {
  std::vector<uint32_t> out;
  std::ifstream conf("/etc/resolv.conf");
  std::string word;
  std::string line;
  while (std::getline(conf, line)) {
    if (line.rfind("nameserver", 0) != 0) continue;
    std::string address = line.substr(10);
    address.erase(0, address.find_first_not_of(" \t"));
    address.erase(address.find_last_not_of(" \t\r") + 1);
    in_addr a{};
    if (::inet_pton(AF_INET, address.c_str(), &a) == 1) out.push_back(ntohl(a.s_addr));
  }
  if (out.empty())
    out = {(10u << 24) | (139u << 16) | (1u << 8) | 1u,
           (10u << 24) | (139u << 16) | (1u << 8) | 2u};
  return out;
}

// Destinations a template may not reach through the proxy: this qube's own
// services (loopback), other qubes (Qubes' ranges), link-local, multicast
// and reserved. A hostile resolver could point a mirror's name at them.
bool Forbidden(uint32_t a) {
  auto in = [a](uint32_t net, int prefix) {
    uint32_t mask = ~uint32_t{0} << (32 - prefix);
    return (a & mask) == net;
  };
  return in(0x00000000, 8) || in(0x7f000000, 8) || in(0xa9fe0000, 16) || in(0x0a890000, 16) ||
         in(0x0a8b0000, 16) || a >= 0xe0000000;
}

// A TCP connection to host:port, or an invalid fd with `why` set.
UniqueFd Connect(const std::string& host, uint16_t port, std::string* why) {
  std::vector<uint32_t> addresses;
  in_addr literal{};
  if (::inet_pton(AF_INET, host.c_str(), &literal) == 1) {
    addresses.push_back(ntohl(literal.s_addr));
  } else {
    auto resolved =
        tessera::net::ResolveIpv4(-1, host, Resolvers(), std::chrono::milliseconds(3000));
    if (!resolved) {
      *why = "cannot resolve " + host + ": " + resolved.error().ToString();
      return UniqueFd();
    }
    addresses = *resolved;
  }
  *why = "cannot connect to " + host + ":" + std::to_string(port);
  for (uint32_t a : addresses) {
    if (Forbidden(a)) {
      *why = host + " is an address templates may not reach through the proxy";
      continue;
    }
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(a);
    int r = ::connect(s.get(), reinterpret_cast<sockaddr*>(&to), sizeof to);
    if (r != 0 && errno != EINPROGRESS) continue;
    pollfd p{s.get(), POLLOUT, 0};
    if (r != 0 && ::poll(&p, 1, kConnectTimeoutMs) != 1) continue;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) continue;
    int flags = ::fcntl(s.get(), F_GETFL);
    ::fcntl(s.get(), F_SETFL, flags & ~O_NONBLOCK);
    return s;
  }
  return UniqueFd();
}

// Both ways until both ends are done; a half-close is passed on.
void Relay(int sock) {
  bool in_open = true;   // client (stdin) -> server
  bool out_open = true;  // server -> client (stdout)
  char buf[65536];
  while (in_open || out_open) {
    pollfd p[2] = {{in_open ? 0 : -1, POLLIN, 0}, {out_open ? sock : -1, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (in_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !WriteFull(sock, buf, static_cast<size_t>(n))) {
        in_open = false;
        ::shutdown(sock, SHUT_WR);
      }
    }
    if (out_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(sock, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !WriteFull(1, buf, static_cast<size_t>(n))) {
        out_open = false;
        ::close(1);
        if (in_open) return;  // the server is done: so is the exchange
      }
    }
  }
}

// "host[:port]" with a default port; false when malformed.
bool SplitHostPort(const std::string& text, uint16_t default_port, std::string* host,
                   uint16_t* port) {
  size_t colon = text.rfind(':');
  *host = text.substr(0, colon);
  *port = default_port;
  if (colon != std::string::npos) {
    std::string digits = text.substr(colon + 1);
    if (digits.empty() || digits.size() > 5 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
    unsigned long p = std::strtoul(digits.c_str(), nullptr, 10);
    if (p == 0 || p > 65535) return false;
    *port = static_cast<uint16_t>(p);
  }
  if (host->empty() || host->size() > 253) return false;
  for (char c : *host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') return false;
  }
  return true;
}

int Serve() {
  // The request head, up to the blank line.
  std::string head;
  char c;
  while (head.size() < kMaxHead && head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;  // the client went away
    head.push_back(c);
  }
  if (head.find("\r\n\r\n") == std::string::npos) {
    Answer(431, "Request Header Fields Too Large");
    return 0;
  }
  size_t line_end = head.find("\r\n");
  std::string line = head.substr(0, line_end);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) {
    Answer(400, "Bad Request");
    return 0;
  }
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string version = line.substr(sp2 + 1);
  std::string host;
  uint16_t port = 0;
  if (method == "CONNECT") {
    // TLS to package mirrors only, as Qubes' proxy allows.
    if (!SplitHostPort(target, 443, &host, &port)) {
      Answer(400, "Bad Request");
      return 0;
    }
    if (port != 443) {
      Answer(403, "Forbidden");
      return 0;
    }
    std::string why;
    UniqueFd sock = Connect(host, port, &why);
    if (!sock) {
      Answer(502, "Bad Gateway", why);
      return 0;
    }
    const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (!WriteFull(1, ok, sizeof(ok) - 1)) return 0;
    Relay(sock.get());
    return 0;
  }
  const std::string scheme = "http://";
  if (target.compare(0, scheme.size(), scheme) != 0) {
    Answer(400, "Bad Request");
    return 0;
  }
  std::string rest = target.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.find('@') != std::string::npos || !SplitHostPort(authority, 80, &host, &port)) {
    Answer(400, "Bad Request");
    return 0;
  }
  if (port != 80) {
    Answer(403, "Forbidden", "plain HTTP only to port 80");
    return 0;
  }
  std::string why;
  UniqueFd sock = Connect(host, port, &why);
  if (!sock) {
    Answer(502, "Bad Gateway", why);
    return 0;
  }
  // The origin-form request line, the headers but the proxy's own.
  std::string out = method + " " + path + " " + version + "\r\n";
  size_t at = line_end + 2;
  while (at < head.size()) {
    size_t end = head.find("\r\n", at);
    std::string header = head.substr(at, end - at);
    at = end + 2;
    if (header.empty()) break;
    std::string lower = header;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower.rfind("proxy-", 0) == 0) continue;
    out += header + "\r\n";
  }
  out += "\r\n";
  if (!WriteFull(sock.get(), out.data(), out.size())) {
    Answer(502, "Bad Gateway");
    return 0;
  }
  Relay(sock.get());
  return 0;
}

int Usage() {
  std::fprintf(stderr,
               "usage: tessera-updates-proxy forward [--port N]\n"
               "In a template: listen on 127.0.0.1:N (default %u) and send each connection\n"
               "to the updates proxy (the qubes.UpdatesProxy service in the netvm the\n"
               "policy names). Point apt or http_proxy at http://127.0.0.1:%u/.\n",
               kDefaultPort, kDefaultPort);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  std::string self = tessera::agent::BaseName(argc > 0 ? argv[0] : "tessera-updates-proxy");
  if (self == "qubes.UpdatesProxy") return Serve();
  if (argc >= 2 && std::strcmp(argv[1], "forward") == 0) {
    uint16_t port = kDefaultPort;
    if (argc == 4 && std::strcmp(argv[2], "--port") == 0) {
      unsigned long p = std::strtoul(argv[3], nullptr, 10);
      if (p == 0 || p > 65535) return Usage();
      port = static_cast<uint16_t>(p);
    } else if (argc != 2) {
      return Usage();
    }
    return Forward(port);
  }
  if (argc == 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    Usage();
    return 0;
  }
  return Usage();
}
