#include "net/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"
#include "net/netns.h"

namespace tessera::net {

namespace {

constexpr size_t kMaxPacket = 4096;

std::string Dotted(uint32_t address) {
  in_addr a{};
  a.s_addr = htonl(address);
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

uint16_t Get16(const std::string& p, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[at]) << 8) |
                               static_cast<uint8_t>(p[at + 1]));
}

// Moves `at` past a (possibly compressed) name; false if it runs off the end.
bool SkipName(const std::string& p, size_t& at) {
  while (at < p.size()) {
    auto len = static_cast<uint8_t>(p[at]);
    if (len == 0) {
      at += 1;
      return true;
    }
    if ((len & 0xc0) == 0xc0) {
      at += 2;  // a pointer ends the name
      return at <= p.size();
    }
    if ((len & 0xc0) != 0) return false;
    at += 1 + len;
  }
  return false;
}

}  // namespace

std::string BuildQuery(uint16_t id, const std::string& name) {
  std::string q;
  q += static_cast<char>(id >> 8);
  q += static_cast<char>(id & 0xff);
  q += std::string("\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);  // RD; one question
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q += static_cast<char>(dot - start);
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  q += std::string("\x00\x00\x01\x00\x01", 5);  // end; type A; class IN
  return q;
}

Result<std::vector<uint32_t>> ParseAnswer(uint16_t id, const std::string& p) {
  if (p.size() < 12 || Get16(p, 0) != id) return Err(Error("malformed DNS answer", EPROTO));
  uint16_t flags = Get16(p, 2);
  if ((flags & 0x8000) == 0) return Err(Error("malformed DNS answer (not a response)", EPROTO));
  int rcode = flags & 0x0f;
  if (rcode == 3) return Err(Error("no such host name (NXDOMAIN)", ENOENT));
  if (rcode != 0)
    return Err(Error("the resolver answered with error " + std::to_string(rcode), EIO));
  size_t at = 12;
  for (uint16_t i = 0, n = Get16(p, 4); i < n; ++i) {
    if (!SkipName(p, at) || at + 4 > p.size()) return Err(Error("malformed DNS answer", EPROTO));
    at += 4;
  }
  std::vector<uint32_t> out;
  for (uint16_t i = 0, n = Get16(p, 6); i < n; ++i) {
    if (!SkipName(p, at) || at + 10 > p.size()) return Err(Error("malformed DNS answer", EPROTO));
    uint16_t type = Get16(p, at);
    uint16_t klass = Get16(p, at + 2);
    uint16_t length = Get16(p, at + 8);
    at += 10;
    if (at + length > p.size()) return Err(Error("malformed DNS answer", EPROTO));
    if (type == 1 && klass == 1 && length == 4) {
      out.push_back((static_cast<uint32_t>(static_cast<uint8_t>(p[at])) << 24) |
                    (static_cast<uint32_t>(static_cast<uint8_t>(p[at + 1])) << 16) |
                    (static_cast<uint32_t>(static_cast<uint8_t>(p[at + 2])) << 8) |
                    static_cast<uint32_t>(static_cast<uint8_t>(p[at + 3])));
    }
    at += length;
  }
  if (out.empty()) return Err(Error("the host name has no IPv4 address", ENOENT));
  return out;
}

Result<std::vector<uint32_t>> ResolveIpv4(int netns_fd, const std::string& name,
                                          const std::vector<uint32_t>& servers,
                                          std::chrono::milliseconds timeout) {
  // Labels of 1..63 bytes: anything else would not encode as a query.
  bool labels_ok = !name.empty() && name.size() <= 253 && name.front() != '.';
  for (size_t start = 0; labels_ok && start < name.size();) {
    size_t dot = name.find('.', start);
    size_t length = (dot == std::string::npos ? name.size() : dot) - start;
    labels_ok = length >= 1 && length <= 63;
    start = dot == std::string::npos ? name.size() : dot + 1;
  }
  if (!labels_ok) return Err(Error("invalid host name " + name, EINVAL));
  if (servers.empty()) return Err(Error("no resolver to ask (the netvm chain has no uplink_dns)"));
  // The socket is made inside the namespace; it stays there.
  UniqueFd sock;
  {
    NetnsVisit in = TRY(NetnsVisit::Enter(netns_fd));
    sock = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock) return Err(Error::FromErrno("socket"));
  }
  Error last("no resolver answered for " + name, ETIMEDOUT);
  for (uint32_t server : servers) {
    uint16_t id = 0;
    if (::getrandom(&id, sizeof id, 0) != sizeof id) return Err(Error::FromErrno("getrandom"));
    std::string query = BuildQuery(id, name);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(53);
    to.sin_addr.s_addr = htonl(server);
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 ||
        ::send(sock.get(), query.data(), query.size(), 0) < 0) {
      last = Error::FromErrno("ask " + Dotted(server) + " for " + name);
      continue;
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd pfd{sock.get(), POLLIN, 0};
      int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      std::string packet(kMaxPacket, '\0');
      ssize_t n = ::recv(sock.get(), packet.data(), packet.size(), 0);
      if (n < 0) {
        last = Error::FromErrno("ask " + Dotted(server) + " for " + name);
        break;
      }
      packet.resize(static_cast<size_t>(n));
      if (packet.size() >= 2 && Get16(packet, 0) != id) continue;  // a stale answer
      auto answer = ParseAnswer(id, packet);
      if (answer) return answer;
      last = Error(Dotted(server) + " for " + name + ": " + answer.error().message(),
                   answer.error().errno_value());
      break;
    }
  }
  return Err(std::move(last));
}

}  // namespace tessera::net
