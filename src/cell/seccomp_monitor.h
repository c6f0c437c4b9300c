#pragma once
// Reports of a cell's seccomp denials (SeccompMode::kNotify; docs/CELL.md
// "Seccomp"). Each denied call of the cell waits in the kernel until the
// listener answers it; the monitor answers with the errno the filter table
// assigns to that call and its arguments (the program's `answers`, run on the
// call's seccomp_data) and says what was denied. It never lets a call through.
//
// With an event loop (the daemon): poll monitor.fd() for POLLIN, then
//
//   SeccompMonitor monitor(cell.TakeSeccompListener(), cell.seccomp_program());
//   auto violation = TRY(monitor.HandleOne());
//   if (violation) audit.Record(*violation);
//
// Without one (tests, `tessera cell run`):
//
//   auto responder = TRY(SeccompResponderThread::Start(
//       std::move(monitor), [](const SeccompViolation& v) { ... }));
//   ...
//   responder->Stop();   // or its destructor
//
// Fail closed: once the listener is closed (monitor destroyed, thread stopped,
// daemon restarted: an adopted cell has none), the kernel answers every call
// the filter would have notified with ENOSYS. Denied calls stay denied; they
// are just no longer reported.

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cell/seccomp_filter.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::cell {

struct SeccompViolation {
  pid_t pid = 0;             // in the monitor's pid namespace (a host pid)
  int syscall_nr = -1;
  std::string syscall_name;  // libseccomp's name; "syscall_N" if it has none
  int errno_answered = 0;    // the call returned -1 with this errno in the cell
  bool target_gone = false;  // the caller died (or was interrupted) before the answer
};

class SeccompMonitor {
 public:
  using Hook = std::function<void(const SeccompViolation&)>;

  // `program` is the kNotify program the cell runs under (Cell::seccomp_program()).
  SeccompMonitor(UniqueFd listener, std::shared_ptr<const SeccompProgram> program);

  int fd() const { return listener_.get(); }

  // Receives one pending notification (blocks until one arrives: poll fd()
  // first), calls `before_answer` with it (so a record exists before the
  // denied call returns in the cell) and answers it. nullopt: the notification
  // went away before it was received (its caller died or was interrupted).
  Result<std::optional<SeccompViolation>> HandleOne(const Hook& before_answer = nullptr);

 private:
  UniqueFd listener_;
  std::shared_ptr<const SeccompProgram> program_;
};

// A thread that serves one monitor until Stop(), or until the cell is gone
// (the listener hangs up when no process uses the filter any more).
class SeccompResponderThread {
 public:
  using Callback = std::function<void(const SeccompViolation&)>;

  // `callback` runs on the thread, once per violation, before the answer.
  static Result<std::unique_ptr<SeccompResponderThread>> Start(SeccompMonitor monitor,
                                                               Callback callback);
  SeccompResponderThread(const SeccompResponderThread&) = delete;
  SeccompResponderThread& operator=(const SeccompResponderThread&) = delete;
  // Stop().
  ~SeccompResponderThread();

  // Ends and joins the thread and closes the listener (later denials: ENOSYS).
  // Idempotent.
  void Stop();

 private:
  SeccompResponderThread(SeccompMonitor monitor, UniqueFd stop, Callback callback);
  void Run();
  void Serve();

  SeccompMonitor monitor_;
  UniqueFd stop_;  // eventfd: readable = stop
  Callback callback_;
  std::thread thread_;
};

}  // namespace tessera::cell
