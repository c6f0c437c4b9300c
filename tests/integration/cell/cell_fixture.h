#pragma once
// Shared fixture of the cell integration tests: a fresh state and runtime dir
// per test, a busybox template, helpers to start cells and run commands in
// them, and cleanup of every cell even when the test fails.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/exec.h"
#include "backend/launcher.h"
#include "cell/cell.h"
#include "cell/cell_backend.h"
#include "cell/seccomp_monitor.h"
#include "common/unique_fd.h"
#include "storage/idmap_internal.h"
#include "storage/private_volume.h"
#include "storage/storage.h"

namespace tessera::cell::testing {

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadAll(int fd) {
  std::string s;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

class CellTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "cell tests need root (namespaces, cgroups, idmapped mounts)";
    char dir[] = "/tmp/tessera-cell-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    tmp_ = dir;
    layout_.state_dir = tmp_ + "/state";
    layout_.runtime_dir = tmp_ + "/run";
    storage::TemplateBuildOptions options;
    options.source = storage::TemplateSource::kBusybox;
    auto built = storage::BuildTemplate(layout_, "base", options);
    ASSERT_TRUE(built) << built.error().ToString();
  }

  void TearDown() override {
    for (const auto& name : started_) {
      auto st = Cell::Cleanup(layout_, name);
      EXPECT_TRUE(st) << name << ": " << st.error().ToString();
    }
    if (!tmp_.empty()) {
      (void)storage::RemoveTree(tmp_);
      // Its ranges in the host registry are stale now: drop them.
      (void)storage::internal::PruneIdRegistry(std::string(storage::kHostIdRegistryDir));
    }
  }

  CellSpec Spec(const std::string& name) {
    CellSpec spec;
    spec.name = name;
    spec.template_name = "base";
    spec.memory_mib = 256;
    spec.pids_max = 256;
    spec.extra_ro_binds.push_back({std::string(TESSERA_BINARY_DIR) + "/tessera-cell-probe", "/probe"});
    return spec;
  }

  // The agent of this build (test binaries live in build/tests/, not beside it).
  static CellOptions Options(CellTestHooks hooks = {}, SeccompMode mode = SeccompMode::kErrno) {
    CellOptions options;
    options.seccomp_mode = mode;
    options.agent_path = std::string(TESSERA_BINARY_DIR) + "/tessera-agent";
    options.test_hooks = hooks;
    return options;
  }

  Result<Cell> Start(const CellSpec& spec, SeccompMode mode = SeccompMode::kErrno) {
    started_.push_back(spec.name);
    return Cell::Start(layout_, spec, Options({}, mode));
  }

  // Starts a cell or fails the test.
  Cell MustStart(const CellSpec& spec, SeccompMode mode = SeccompMode::kErrno) {
    auto cell = Start(spec, mode);
    if (!cell) {
      ADD_FAILURE() << "start " << spec.name << ": " << cell.error().ToString();
      std::abort();
    }
    return std::move(*cell);
  }

  // Runs argv in the cell through its agent, with stdout and stderr captured:
  // the descriptors passed into the cell (kPassFds, the cell fast path) or
  // relayed as frames over the channel (kRelay, what VMs do).
  RunResult Run(Cell& cell, std::vector<std::string> argv, const std::string& user = "root",
                backend::StreamMode mode = backend::StreamMode::kPassFds) {
    UniqueFd out(static_cast<int>(::memfd_create("out", MFD_CLOEXEC)));
    UniqueFd err(static_cast<int>(::memfd_create("err", MFD_CLOEXEC)));
    backend::ExecRequest req;
    req.argv = std::move(argv);
    req.user = user;
    req.stdout_fd = out.get();
    req.stderr_fd = err.get();
    RunResult r;
    auto code = backend::Exec(cell, req, mode, CellBackend::kCapabilities);
    if (!code) {
      r.code = -1;
      r.err = code.error().ToString();
      return r;
    }
    r.code = *code;
    r.out = ReadAll(out.get());
    r.err = ReadAll(err.get());
    return r;
  }

  RunResult Sh(Cell& cell, const std::string& script) { return Run(cell, {"/bin/sh", "-c", script}); }

  // Does this kernel run i386 system calls (int 0x80) at all? Kernels built
  // without IA32 emulation, or booted with ia32_emulation=0, answer SIGSEGV
  // to every process, sandboxed or not: then there is no foreign ABI to kill.
  static bool KernelRunsInt80() {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::string probe = std::string(TESSERA_BINARY_DIR) + "/tessera-cell-probe";
      int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 1);
      ::execl(probe.c_str(), probe.c_str(), "int80", nullptr);
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  // The i386 entry is killed by the filter (SIGSYS), where the kernel has one.
  void ExpectInt80Killed(Cell& cell) {
    if (!KernelRunsInt80()) {
      std::printf(
          "[ SKIPPED  ] int 0x80 check: this kernel has no i386 system call entry "
          "(no IA32 emulation), so there is no foreign ABI to deny\n");
      return;
    }
    EXPECT_EQ(Run(cell, {"/probe", "int80"}).code, 128 + SIGSYS);
  }

  // ---- Seccomp notify mode (opt-in) -----------------------------------------
  // MustStartMonitored starts a cell in SeccompMode::kNotify with a responder
  // thread that records every seccomp denial of that cell. A violation is
  // recorded before the denied call returns inside the cell, so Violations()
  // is complete for every command that has finished.
  Cell MustStartMonitored(CellSpec spec) {
    Cell cell = MustStart(spec, SeccompMode::kNotify);
    auto record = std::make_shared<ViolationRecord>();
    auto responder = SeccompResponderThread::Start(
        SeccompMonitor(cell.TakeSeccompListener(), cell.seccomp_program()),
        [record](const SeccompViolation& v) {
          std::lock_guard<std::mutex> lock(record->mu);
          record->violations.push_back(v);
        });
    if (!responder) {
      ADD_FAILURE() << "seccomp responder for " << spec.name << ": " << responder.error().ToString();
      std::abort();
    }
    monitored_[spec.name] = {record, std::move(*responder)};
    return cell;
  }

  // The violations of a cell started with MustStartMonitored, oldest first.
  std::vector<SeccompViolation> Violations(const std::string& name) {
    auto it = monitored_.find(name);
    if (it == monitored_.end()) return {};
    std::lock_guard<std::mutex> lock(it->second.record->mu);
    return it->second.record->violations;
  }

  void ClearViolations(const std::string& name) {
    auto it = monitored_.find(name);
    if (it == monitored_.end()) return;
    std::lock_guard<std::mutex> lock(it->second.record->mu);
    it->second.record->violations.clear();
  }

  // "name(nr)=errno by pid" per violation, for failure messages.
  static std::string Describe(const std::vector<SeccompViolation>& violations) {
    std::string out;
    for (const auto& v : violations) {
      out += v.syscall_name + "(" + std::to_string(v.syscall_nr) + ")=" +
             std::to_string(v.errno_answered) + " by pid " + std::to_string(v.pid) + "\n";
    }
    return out.empty() ? "none" : out;
  }

  struct ViolationRecord {
    std::mutex mu;
    std::vector<SeccompViolation> violations;
  };
  struct Monitored {
    std::shared_ptr<ViolationRecord> record;
    std::unique_ptr<SeccompResponderThread> responder;
  };
  // Members outlive TearDown: a responder ends when its cell dies (Stop or
  // TearDown's Cleanup) or, at the latest, when the fixture is destroyed.
  std::map<std::string, Monitored> monitored_;
  // ---- end of seccomp notify mode --------------------------------------------

  std::string tmp_;
  storage::Layout layout_;
  std::vector<std::string> started_;
};

}  // namespace tessera::cell::testing
