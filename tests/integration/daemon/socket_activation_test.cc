// The admin socket passed by socket activation (tesserad.socket): used as
// systemd made it (mode kept), left in place when the daemon stops so the
// next one is served on it, and refused when it is not the admin socket.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>

#include "daemon_fixture.h"

namespace tessera::daemon_testing {
namespace {

UniqueFd ListeningAt(const std::string& path, mode_t mode) {
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (!sock || ::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path.c_str(), mode) != 0 || ::listen(sock.get(), 16) != 0) {
    return UniqueFd();
  }
  return sock;
}

TEST_F(DaemonTest, TheAdminSocketBySocketActivation) {
  ASSERT_TRUE(MakeDirs(layout_.runtime_dir, 0755));
  const std::string path = layout_.runtime_dir + "/admin.sock";
  UniqueFd sock = ListeningAt(path, 0600);
  ASSERT_TRUE(sock) << std::strerror(errno);
  struct stat made {};
  ASSERT_EQ(::stat(path.c_str(), &made), 0);
  activation_fd_ = sock.get();
  StartDaemon();
  CliResult ls = Cli({"ls"});
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_THAT(ReadFile(root_ + "/daemon.log").value_or(""),
              HasSubstr("admin socket from socket activation"));
  struct stat now {};
  ASSERT_EQ(::stat(path.c_str(), &now), 0);
  EXPECT_EQ(now.st_ino, made.st_ino) << "the daemon bound no socket of its own";
  EXPECT_EQ(now.st_mode & 07777, 0600u) << "the unit's mode is kept";

  // Stopped, the daemon leaves the socket; a client waits in its backlog
  // and the next daemon answers it.
  KillDaemon(SIGTERM);
  ASSERT_EQ(::stat(path.c_str(), &now), 0) << "the activated socket stays";
  EXPECT_EQ(now.st_ino, made.st_ino);
  pid_t waiting = SpawnCli({"ls"});
  StartDaemon();
  int status = 0;
  ASSERT_EQ(::waitpid(waiting, &status, 0), waiting);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  KillDaemon(SIGTERM);
  activation_fd_ = -1;
}

TEST_F(DaemonTest, ASocketThatIsNotTheAdminSocketIsRefused) {
  ASSERT_TRUE(MakeDirs(layout_.runtime_dir, 0755));
  UniqueFd elsewhere = ListeningAt(root_ + "/other.sock", 0600);
  ASSERT_TRUE(elsewhere);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int log = ::open((root_ + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(log, 1);
    ::dup2(log, 2);
    if (::dup2(elsewhere.get(), 3) != 3 || ::fcntl(3, F_SETFD, 0) != 0) ::_exit(125);
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::execl(TESSERA_CLI, TESSERA_CLI, "--config", config_.c_str(), "daemon",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status;
  EXPECT_THAT(
      ReadFile(root_ + "/daemon.log").value_or(""),
      HasSubstr("not a listening unix stream socket at " + layout_.runtime_dir + "/admin.sock"));
}

}  // namespace
}  // namespace tessera::daemon_testing
