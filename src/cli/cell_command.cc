// `tessera cell run [--config FILE] [--dispvm] QUBE -- CMD [ARG...]`: the
// low-level, daemon-less front end of the cell backend (src/cell/). Starts QUBE
// (or, with --dispvm, a fresh disposable made from the disposable template
// QUBE) as a cell, runs CMD inside as the qube's root with this process's
// stdin/stdout/stderr, stops the cell and exits with CMD's status.
// No cell outlives the run: SIGINT/SIGTERM/SIGHUP/SIGQUIT stop it and clean
// up; on SIGKILL the cell dies with this process (StarterDeath::kCellDies) and
// the next `cell run` or `tessera cell cleanup` removes what is left
// (backend/run_claim.h).

#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/exec.h"
#include "backend/launcher.h"
#include "backend/planner.h"
#include "backend/run_claim.h"
#include "cell/cell_backend.h"
#include "cli/command.h"
#include "common/paths.h"
#include "config/loader.h"
#include "storage/storage.h"

namespace tessera::cli {
namespace {

// Exit codes of `cell run` itself (CMD's own status otherwise), as in Qubes.
constexpr int kExitFailure = 125;
constexpr int kExitCannotRun = 126;
constexpr int kExitNotFound = 127;

struct RunArgs {
  bool dispvm = false;
  std::string qube;
  std::vector<std::string> command;
};

void PrintError(const std::string& message) {
  std::fprintf(stderr, "tessera cell run: %s\n", message.c_str());
}

Result<std::string> FreshDisposableName(const storage::Layout& layout) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint16_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r)) return Err(Error::FromErrno("getrandom"));
    std::string name = "disp" + std::to_string(1000 + r % 9000);
    struct stat st;
    if (::stat(layout.QubeDir(name).c_str(), &st) != 0 &&
        ::stat(layout.ScratchDir(name).c_str(), &st) != 0 &&
        ::stat((backend::RunClaimDir(layout) + "/" + name).c_str(), &st) != 0) {
      return name;
    }
  }
  return Err(Error("no free disposable name", EEXIST));
}

// Removes what killed runs left (their claims are no longer held). Quiet
// when nothing was found unless `verbose`; failures are always reported.
// Returns whether every leftover was removed.
bool SweepKilledRuns(backend::Backend& backend, const storage::Layout& layout, bool verbose) {
  bool ok = true;
  std::vector<backend::SweptRun> swept = backend::SweepDeadRuns(backend, layout);
  for (const auto& s : swept) {
    if (s.left_running) {
      std::fprintf(stderr,
                   "tessera cell: a killed run left %s, which runs again (started elsewhere): "
                   "left alone\n",
                   s.name.c_str());
    } else if (s.result) {
      std::fprintf(stderr, "tessera cell: removed what a killed run left of %s\n", s.name.c_str());
    } else {
      ok = false;
      std::fprintf(stderr, "tessera cell: cannot remove what a killed run left of %s: %s\n",
                   s.name.c_str(), s.result.error().ToString().c_str());
    }
  }
  if (verbose && swept.empty()) std::printf("nothing left by killed runs\n");
  return ok;
}

int Run(const RunArgs& args, const CliContext& ctx) {
  auto system = config::LoadSystemFile(ConfigPath(ctx.config_flag));
  if (!system) {
    PrintError(system.error().ToString());
    return kExitFailure;
  }
  storage::Layout layout = storage::Layout::FromEnvironment();
  Result<backend::LaunchPlan> plan = Err(Error("unset"));
  if (args.dispvm) {
    auto name = FreshDisposableName(layout);
    if (!name) {
      PrintError(name.error().ToString());
      return kExitFailure;
    }
    plan = backend::PlanDisposable(*system, args.qube, *name);
  } else {
    plan = backend::PlanLaunch(*system, args.qube);
  }
  if (!plan) {
    PrintError(plan.error().ToString());
    return kExitFailure;
  }
  bool disposable = plan->spec.disposable;

  // SIGINT/SIGTERM/SIGHUP/SIGQUIT end the cell (its agent terminates CMD),
  // then we clean up normally. Blocked before any thread exists so all
  // inherit it; one arriving during the launch is acted on right after it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  cell::CellOptions options;
  options.on_starter_death = cell::StarterDeath::kCellDies;
  cell::CellBackend cells(layout, options);
  SweepKilledRuns(cells, layout, /*verbose=*/false);
  auto claim = backend::RunClaim::Take(
      layout, plan->spec.name, disposable ? backend::Disposable::kYes : backend::Disposable::kNo);
  if (!claim) {
    PrintError(claim.error().ToString());
    return kExitFailure;
  }
  auto instance = backend::Launch(cells, layout, *plan, [](const backend::TemplateNeed& need) {
    std::fprintf(stderr, "tessera cell run: template %s does not exist yet; building it from %s\n",
                 need.name.c_str(), need.source.empty() ? "busybox" : need.source.c_str());
  });
  if (!instance) {
    // A disposable's storage is made for this run alone.
    if (disposable) (void)storage::DestroyQubeStorage(layout, plan->spec.name);
    claim->Release();
    PrintError(instance.error().ToString());
    return kExitFailure;
  }
  pid_t init = (*instance)->pid();
  if (auto noted = claim->SetInstance(init); !noted) PrintError(noted.error().ToString());
  // `done` under the mutex: once set, init may be reaped and its pid reused,
  // so the watcher must not signal it any more.
  std::mutex mu;
  bool done = false;
  int interrupted_by = 0;
  std::thread watcher([&stop_signals, &mu, &done, &interrupted_by, init] {
    int sig = 0;
    if (sigwait(&stop_signals, &sig) != 0) return;
    std::lock_guard<std::mutex> lock(mu);
    if (!done) {
      interrupted_by = sig;
      ::kill(init, SIGTERM);
    }
  });
  backend::ExecRequest request;
  request.argv = args.command;
  request.stdin_fd = STDIN_FILENO;
  request.stdout_fd = STDOUT_FILENO;
  request.stderr_fd = STDERR_FILENO;
  auto code = backend::Exec(**instance, request, backend::StreamMode::kAuto, cells.capabilities());
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  pthread_kill(watcher.native_handle(), SIGTERM);  // wakes its sigwait
  watcher.join();
  auto stopped = backend::Retire(**instance, layout, disposable, std::chrono::seconds(5));
  if (stopped) {
    claim->Release();
  } else {
    // The claim stays: the next run or `cell cleanup` tries again.
    PrintError(stopped.error().ToString());
  }
  if (interrupted_by != 0) {
    PrintError(std::string("interrupted by ") + sigabbrev_np(interrupted_by) + "; cell stopped");
    return 128 + interrupted_by;
  }
  if (!code) {
    PrintError(code.error().ToString());
    int e = code.error().errno_value();
    return e == ENOENT ? kExitNotFound : e == EACCES ? kExitCannotRun : kExitFailure;
  }
  return stopped ? *code : kExitFailure;
}

int RunCleanup() {
  storage::Layout layout = storage::Layout::FromEnvironment();
  cell::CellBackend cells(layout, {});
  return SweepKilledRuns(cells, layout, /*verbose=*/true) ? 0 : 1;
}

void Register(CLI::App& app, CliContext& ctx) {
  auto* cell = app.add_subcommand("cell", "Low-level cell backend (runs without the daemon; root)");
  cell->require_subcommand(1);
  auto* run = cell->add_subcommand(
      "run",
      "Start QUBE as a cell, run CMD inside as its root with this terminal's stdio, stop it and "
      "exit with CMD's status (125: cell failure, 126: cannot run, 127: not found)");
  auto args = std::make_shared<RunArgs>();
  run->add_flag("--dispvm", args->dispvm,
                "QUBE is a disposable template: run CMD in a fresh disposable made from it, "
                "destroyed afterwards");
  run->add_option("qube", args->qube, "Qube name (from the system description)")->required();
  run->add_option("command", args->command, "Command and arguments, after --")->required();
  run->footer(
      "Usage: tessera [--config FILE] cell run [--dispvm] QUBE -- CMD [ARG...]\n"
      "The system description comes from --config (before `cell`), else $TESSERA_CONFIG, else\n"
      "/etc/tessera/system.toml. Put -- before CMD when it has options of its own.");
  run->callback([args, &ctx] { ctx.exit_code = Run(*args, ctx); });

  auto* cleanup = cell->add_subcommand(
      "cleanup",
      "Remove what `cell run`s killed with SIGKILL left behind (cgroups, runtime dir, a "
      "disposable's storage); runs that are alive are left alone");
  cleanup->callback([&ctx] { ctx.exit_code = RunCleanup(); });
}

const CommandRegistration kRegistration({"cell"}, Register);

}  // namespace
}  // namespace tessera::cli
