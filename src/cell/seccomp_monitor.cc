#include "cell/seccomp_monitor.h"

#include <linux/seccomp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <seccomp.h>

#include "common/log.h"

namespace tessera::cell {
namespace {

// The errno the kErrno compilation of the policy returns for this call.
// Anything but an errno there (the program would have allowed or killed it,
// which a notification never stands for) is answered with ENOSYS: the monitor
// never lets a call through.
int AnswerFor(const SeccompProgram& program, const seccomp_data& data) {
  if (program.answers.empty()) return ENOSYS;
  uint32_t ret = EvaluateSeccompProgram(program.answers, data);
  if ((ret & SECCOMP_RET_ACTION_FULL) != SECCOMP_RET_ERRNO) return ENOSYS;
  int err = static_cast<int>(ret & SECCOMP_RET_DATA);
  return err != 0 ? err : ENOSYS;
}

std::string SyscallName(uint32_t arch, int nr) {
  char* name = seccomp_syscall_resolve_num_arch(arch, nr);
  if (name == nullptr) return "syscall_" + std::to_string(nr);
  std::string out = name;
  std::free(name);
  return out;
}

}  // namespace

SeccompMonitor::SeccompMonitor(UniqueFd listener, std::shared_ptr<const SeccompProgram> program)
    : listener_(std::move(listener)), program_(std::move(program)) {}

Result<std::optional<SeccompViolation>> SeccompMonitor::HandleOne(const Hook& before_answer) {
  if (!listener_) return Err(Error("seccomp monitor without a listener", EBADF));
  seccomp_notif notif;
  for (;;) {
    // The kernel insists on a zeroed buffer.
    std::memset(&notif, 0, sizeof(notif));
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &notif) == 0) break;
    if (errno == EINTR) continue;
    if (errno == ENOENT) return std::optional<SeccompViolation>();
    return Err(Error::FromErrno("SECCOMP_IOCTL_NOTIF_RECV"));
  }
  SeccompViolation v;
  v.pid = static_cast<pid_t>(notif.pid);
  v.syscall_nr = notif.data.nr;
  v.syscall_name = SyscallName(notif.data.arch, notif.data.nr);
  v.errno_answered = program_ ? AnswerFor(*program_, notif.data) : ENOSYS;
  if (before_answer) before_answer(v);

  seccomp_notif_resp resp;
  std::memset(&resp, 0, sizeof(resp));
  resp.id = notif.id;
  resp.error = -v.errno_answered;
  resp.val = 0;
  resp.flags = 0;  // never SECCOMP_USER_NOTIF_FLAG_CONTINUE: nothing is let through
  for (;;) {
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0) break;
    if (errno == EINTR) continue;
    // The caller died, or a signal interrupted its call (it will be restarted
    // and notified again): nothing left to answer.
    if (errno == ENOENT) {
      v.target_gone = true;
      break;
    }
    return Err(Error::FromErrno("SECCOMP_IOCTL_NOTIF_SEND"));
  }
  return std::optional<SeccompViolation>(std::move(v));
}

Result<std::unique_ptr<SeccompResponderThread>> SeccompResponderThread::Start(
    SeccompMonitor monitor, Callback callback) {
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop) return Err(Error::FromErrno("eventfd"));
  std::unique_ptr<SeccompResponderThread> t(
      new SeccompResponderThread(std::move(monitor), std::move(stop), std::move(callback)));
  t->thread_ = std::thread([raw = t.get()] { raw->Run(); });
  return t;
}

SeccompResponderThread::SeccompResponderThread(SeccompMonitor monitor, UniqueFd stop,
                                               Callback callback)
    : monitor_(std::move(monitor)), stop_(std::move(stop)), callback_(std::move(callback)) {}

SeccompResponderThread::~SeccompResponderThread() { Stop(); }

void SeccompResponderThread::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof(one));
  thread_.join();
}

void SeccompResponderThread::Run() {
  Serve();
  // However the loop ended, the listener goes with it: later denials fail
  // with ENOSYS instead of waiting for an answer that never comes.
  monitor_ = SeccompMonitor(UniqueFd(), nullptr);
}

void SeccompResponderThread::Serve() {
  for (;;) {
    pollfd fds[2] = {{monitor_.fd(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      Log(LogLevel::kError, "seccomp responder: poll failed", {{"errno", std::to_string(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) != 0) {
      auto handled = monitor_.HandleOne(callback_);
      if (!handled) {
        Log(LogLevel::kError, "seccomp responder", {{"error", handled.error().ToString()}});
        return;
      }
      continue;
    }
    // POLLHUP: no process uses the filter any more (the cell is gone).
    if ((fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) return;
  }
}

}  // namespace tessera::cell
