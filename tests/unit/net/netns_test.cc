// The calling thread in another network namespace for a scope, and back.

#include "net/netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

namespace tessera::net {
namespace {

ino_t ThreadNetns() {
  struct stat st {};
  if (::stat("/proc/thread-self/ns/net", &st) != 0) return 0;
  return st.st_ino;
}

TEST(NetnsVisit, EntersForTheScopeAndComesBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "making a network namespace needs root";
  UniqueFd other;
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) == 0) {
      other = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    }
  }).join();
  ASSERT_TRUE(other) << "unshare(CLONE_NEWNET) failed";
  struct stat target {};
  ASSERT_EQ(::fstat(other.get(), &target), 0);
  const ino_t home = ThreadNetns();
  ASSERT_NE(home, target.st_ino);
  UniqueFd sock;
  {
    NetnsVisit in = *NetnsVisit::Enter(other.get());
    EXPECT_EQ(ThreadNetns(), target.st_ino);
    sock = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  }
  EXPECT_EQ(ThreadNetns(), home);
  // What was made inside stays there (SIOCGSKNS: the socket's namespace).
  ASSERT_TRUE(sock);
  UniqueFd sock_ns(::ioctl(sock.get(), 0x894C /* SIOCGSKNS */));
  ASSERT_TRUE(sock_ns);
  struct stat of_sock {};
  ASSERT_EQ(::fstat(sock_ns.get(), &of_sock), 0);
  EXPECT_EQ(of_sock.st_ino, target.st_ino);
  {
    NetnsVisit stay = *NetnsVisit::Enter(-1);
    EXPECT_EQ(ThreadNetns(), home);
  }
  EXPECT_EQ(ThreadNetns(), home);
}

TEST(NetnsVisit, ADescriptorThatIsNoNamespaceIsRefusedAndTheThreadStays) {
  const ino_t home = ThreadNetns();
  UniqueFd not_ns(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(not_ns);
  auto in = NetnsVisit::Enter(not_ns.get());
  ASSERT_FALSE(in);
  EXPECT_NE(in.error().ToString().find("setns"), std::string::npos) << in.error().ToString();
  EXPECT_EQ(ThreadNetns(), home);
}

}  // namespace
}  // namespace tessera::net
