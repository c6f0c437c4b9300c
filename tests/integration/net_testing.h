#pragma once
// Helpers of the network tests: entering a namespace in a child, TCP and UDP
// probes, and servers (TCP, UDP, a tiny DNS resolver) in test-made
// namespaces. A namespace is a name under /run/netns or a path
// (/proc/PID/ns/net).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace tessera::net_testing {

inline std::string NsFile(const std::string& ns) {
  return !ns.empty() && ns[0] == '/' ? ns : "/run/netns/" + ns;
}

// The answer to a DNS query: none for names starting with "mute" (a
// resolver that does not answer), NXDOMAIN for names starting with "nx",
// otherwise one A record, `address`.
inline std::string DnsAnswer(const std::string& query, const std::string& address) {
  std::string out = query.substr(0, 2);
  size_t at = 12;
  while (at < query.size() && query[at] != 0) at += 1 + static_cast<uint8_t>(query[at]);
  at += 5;  // end, type, class
  if (at > query.size()) return out;
  if (query.size() > 17 && query.compare(13, 4, "mute") == 0) return "";
  bool nx = query.size() > 15 && query.compare(13, 2, "nx") == 0;
  out += std::string(nx ? "\x81\x83" : "\x81\x80", 2);
  out += std::string("\x00\x01", 2);
  out += std::string(nx ? "\x00\x00" : "\x00\x01", 2);
  out += std::string("\x00\x00\x00\x00", 4);
  out += query.substr(12, at - 12);
  if (nx) return out;
  out += std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04", 12);
  in_addr a{};
  ::inet_pton(AF_INET, address.c_str(), &a);
  out.append(reinterpret_cast<const char*>(&a), 4);
  return out;
}

inline bool Sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

// Runs `fn` in a child that entered the namespace `ns`; what it writes to
// the given fd comes back.
inline std::string InNetns(const std::string& ns, const std::function<std::string()>& fn) {
  int p[2];
  if (::pipe(p) != 0) return "";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    int fd = ::open(NsFile(ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) _exit(1);
    std::string out = fn();
    (void)!::write(p[1], out.data(), out.size());
    _exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status;
  ::waitpid(pid, &status, 0);
  return out;
}

inline sockaddr_in Addr(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// A TCP connection (from `source` if given) that reads the server's answer;
// "" when it cannot connect or hears nothing within a second.
inline std::string Tcp(const std::string& ip, uint16_t port, const std::string& source = "") {
  ::tessera::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  if (!source.empty()) {
    sockaddr_in b = Addr(source, 0);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&b), sizeof(b)) != 0) return "";
  }
  sockaddr_in a = Addr(ip, port);
  ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
  pollfd pfd{s.get(), POLLIN, 0};
  if (::poll(&pfd, 1, 1000) <= 0) return "";
  char buf[64];
  ssize_t n = ::read(s.get(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

inline std::string Udp(const std::string& ip, uint16_t port) {
  ::tessera::UniqueFd s(::socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in a = Addr(ip, port);
  if (::sendto(s.get(), "q", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 1) return "";
  pollfd pfd{s.get(), POLLIN, 0};
  if (::poll(&pfd, 1, 1000) <= 0) return "";
  char buf[64];
  ssize_t n = ::recv(s.get(), buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Serves TCP on `tcp_ports` and UDP on `udp_port` in `ns`, answering each
// with the peer's address, until killed. With `dns_answer`, a UDP packet
// that is a DNS query is answered as a resolver would (DnsAnswer).
inline pid_t Serve(const std::string& ns, std::vector<uint16_t> tcp_ports, uint16_t udp_port,
                   const std::string& dns_answer = "") {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int fd = ::open(NsFile(ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) _exit(1);
  std::vector<pollfd> fds;
  for (uint16_t port : tcp_ports) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = Addr("0.0.0.0", port);
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(s, 16) != 0)
      _exit(1);
    fds.push_back({s, POLLIN, 0});
  }
  if (udp_port != 0) {
    int u = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a = Addr("0.0.0.0", udp_port);
    if (::bind(u, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) _exit(1);
    fds.push_back({u, POLLIN, 0});
  }
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      char ip[INET_ADDRSTRLEN] = {};
      if (i < tcp_ports.size()) {
        int c = ::accept(fds[i].fd, reinterpret_cast<sockaddr*>(&peer), &len);
        if (c < 0) continue;
        ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        (void)!::write(c, ip, std::strlen(ip));
        ::close(c);
      } else {
        char q[512];
        ssize_t n =
            ::recvfrom(fds[i].fd, q, sizeof(q), 0, reinterpret_cast<sockaddr*>(&peer), &len);
        if (n < 0) continue;
        ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        if (!dns_answer.empty() && n >= 12) {
          std::string answer = DnsAnswer(std::string(q, static_cast<size_t>(n)), dns_answer);
          if (answer.empty()) continue;
          ::sendto(fds[i].fd, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&peer),
                   len);
          continue;
        }
        ::sendto(fds[i].fd, ip, std::strlen(ip), 0, reinterpret_cast<sockaddr*>(&peer), len);
      }
    }
  }
}

// In a server's child: enters `ns` and listens on TCP `port` (or exits).
inline int ListenIn(const std::string& ns, uint16_t port) {
  int fd = ::open(NsFile(ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) _exit(1);
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a = Addr("0.0.0.0", port);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(s, 16) != 0) _exit(1);
  return s;
}

// An HTTP server in `ns` on `port`: every request (head read to its blank
// line) is answered "200" with the peer's address as the body, until killed.
inline pid_t ServeHttp(const std::string& ns, uint16_t port) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int s = ListenIn(ns, port);
  for (;;) {
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    int c = ::accept(s, reinterpret_cast<sockaddr*>(&peer), &len);
    if (c < 0) continue;
    std::string head;
    char ch;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(c, &ch, 1) == 1) head += ch;
    char ip[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
    std::string body = ip;
    std::string reply = "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n\r\n" + body;
    (void)!::write(c, reply.data(), reply.size());
    ::close(c);
  }
}

}  // namespace tessera::net_testing
