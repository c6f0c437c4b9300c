// Cell start-up and idle memory, measured against bubblewrap in the same run.
//
//   sudo build/tests/bench/bench_cell_start
//
// BM_DisposableVsBwrap: each iteration creates a disposable from the busybox
// template, starts it, runs /bin/true, stops and destroys it; and runs
// `bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc /bin/true`.
// Counters: medians of both (ms) and their ratio (target <= 2). The runtime
// dir is a private tmpfs, as /run is on real hosts; the state dir is on disk.
// BM_IdleMemoryPerCell: 20 idle cells; host memory per cell = RSS and PSS of
// the cells' processes, and the kernel's memory cgroup charge (target < 4 MiB).

#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/exec.h"
#include "backend/launcher.h"
#include "cell/cell.h"
#include "cell/cell_backend.h"
#include "cell/cgroups.h"
#include "common/fs.h"
#include "storage/storage.h"

extern char** environ;

namespace tessera::cell {
namespace {

CellOptions Options() {
  std::string cli = TESSERA_CLI;
  CellOptions options;
  options.agent_path = cli.substr(0, cli.rfind('/')) + "/tessera-agent";
  return options;
}

Result<int> RunTrue(const Cell& cell) {
  backend::ExecRequest req;
  req.argv = {"/bin/true"};
  return backend::Exec(cell, req, backend::StreamMode::kPassFds, CellBackend::kCapabilities);
}

struct BenchEnv {
  storage::Layout layout;
  std::string tmp;
  BenchEnv() {
    char dir[] = "/tmp/tessera-bench-XXXXXX";
    tmp = ::mkdtemp(dir);
    layout.state_dir = tmp + "/state";
    layout.runtime_dir = tmp + "/run";
    // The runtime dir lives on tmpfs as /run/tessera does on every real host
    // (this machine's /run and /tmp are on disk).
    ::mkdir(layout.runtime_dir.c_str(), 0755);
    runtime_tmpfs = ::mount("tessera-bench", layout.runtime_dir.c_str(), "tmpfs",
                            MS_NOSUID | MS_NODEV, "mode=0755,size=256m") == 0;
    storage::TemplateBuildOptions options;
    (void)storage::BuildTemplate(layout, "base", options);
  }
  ~BenchEnv() {
    if (runtime_tmpfs) (void)::umount2(layout.runtime_dir.c_str(), MNT_DETACH);
    (void)storage::RemoveTree(tmp);
  }
  bool runtime_tmpfs = false;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

bool RunBwrap() {
  const char* argv[] = {"bwrap", "--unshare-all", "--ro-bind", "/",         "/",    "--dev",
                        "/dev",  "--proc",        "/proc",     "/bin/true", nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "bwrap", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    return false;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void BM_DisposableVsBwrap(benchmark::State& state) {
  if (::geteuid() != 0) {
    state.SkipWithError("needs root");
    return;
  }
  BenchEnv env;
  std::vector<double> cell_ms, bwrap_ms, start_ms, exec_ms, stop_ms;
  int n = 0;
  for (auto _ : state) {
    CellSpec spec;
    spec.name = "bench" + std::to_string(n++);
    spec.template_name = "base";
    spec.disposable = true;
    spec.memory_mib = 256;
    auto t0 = std::chrono::steady_clock::now();
    auto cell = Cell::Start(env.layout, spec, Options());
    if (!cell) {
      state.SkipWithError(cell.error().ToString().c_str());
      return;
    }
    auto ts = std::chrono::steady_clock::now();
    auto code = RunTrue(*cell);
    auto te = std::chrono::steady_clock::now();
    auto stopped = backend::Retire(*cell, env.layout, /*disposable=*/true, std::chrono::seconds(2));
    auto t1 = std::chrono::steady_clock::now();
    start_ms.push_back(Ms(ts - t0));
    exec_ms.push_back(Ms(te - ts));
    stop_ms.push_back(Ms(t1 - te));
    if (!code || *code != 0 || !stopped) {
      state.SkipWithError("cell run failed");
      return;
    }
    auto t2 = std::chrono::steady_clock::now();
    if (!RunBwrap()) {
      state.SkipWithError("bwrap failed");
      return;
    }
    auto t3 = std::chrono::steady_clock::now();
    cell_ms.push_back(Ms(t1 - t0));
    bwrap_ms.push_back(Ms(t3 - t2));
  }
  double c = Median(cell_ms);
  double b = Median(bwrap_ms);
  state.counters["cell_median_ms"] = c;
  state.counters["bwrap_median_ms"] = b;
  state.counters["ratio"] = b > 0 ? c / b : 0;
  state.counters["start_ms"] = Median(start_ms);
  state.counters["exec_ms"] = Median(exec_ms);
  state.counters["stop_ms"] = Median(stop_ms);
  state.counters["runtime_on_tmpfs"] = env.runtime_tmpfs ? 1 : 0;
}
BENCHMARK(BM_DisposableVsBwrap)->Iterations(60)->Unit(benchmark::kMillisecond);

// `/bin/true` in an already running cell (what `tessera run work true` costs
// below the daemon): median and p99 over 200 runs.
void BM_ExecInRunningCell(benchmark::State& state) {
  if (::geteuid() != 0) {
    state.SkipWithError("needs root");
    return;
  }
  BenchEnv env;
  CellSpec spec;
  spec.name = "execbench";
  spec.template_name = "base";
  spec.disposable = true;
  auto cell = Cell::Start(env.layout, spec, Options());
  if (!cell) {
    state.SkipWithError(cell.error().ToString().c_str());
    return;
  }
  std::vector<double> ms;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto code = RunTrue(*cell);
    ms.push_back(Ms(std::chrono::steady_clock::now() - t0));
    if (!code || *code != 0) {
      state.SkipWithError("exec failed");
      break;
    }
  }
  std::sort(ms.begin(), ms.end());
  state.counters["median_ms"] = Median(ms);
  state.counters["p99_ms"] = ms.empty() ? 0 : ms[ms.size() * 99 / 100];
  (void)backend::Retire(*cell, env.layout, /*disposable=*/true, std::chrono::seconds(2));
}
BENCHMARK(BM_ExecInRunningCell)->Iterations(200)->Unit(benchmark::kMillisecond);

// Sum of "Key: N kB" lines of /proc/<pid>/smaps_rollup.
double SmapsKb(pid_t pid, const std::string& key) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/smaps_rollup", 1 << 16);
  if (!text) return 0;
  size_t pos = text->find("\n" + key + ":");
  if (pos == std::string::npos) return 0;
  return std::atof(text->c_str() + pos + key.size() + 2);
}

void BM_IdleMemoryPerCell(benchmark::State& state) {
  if (::geteuid() != 0) {
    state.SkipWithError("needs root");
    return;
  }
  constexpr int kCells = 20;
  BenchEnv env;
  char real[PATH_MAX];  // cgroup names derive from the canonical runtime dir
  if (::realpath(env.layout.runtime_dir.c_str(), real) == nullptr) {
    state.SkipWithError("realpath of the runtime dir failed");
    return;
  }
  for (auto _ : state) {
    std::vector<Cell> cells;
    for (int i = 0; i < kCells; ++i) {
      CellSpec spec;
      spec.name = "idle" + std::to_string(i);
      spec.template_name = "base";
      spec.disposable = true;
        auto cell = Cell::Start(env.layout, spec, Options());
      if (!cell) {
        state.SkipWithError(cell.error().ToString().c_str());
        for (auto& c : cells) (void)backend::Retire(c, env.layout, true, std::chrono::seconds(2));
        return;
      }
      cells.push_back(std::move(*cell));
    }
    ::usleep(200000);  // let them settle
    double rss = 0, pss = 0, charged = 0;
    for (auto& c : cells) {
      auto cg = CellCgroups::ForQube(real, c.name());
      if (!cg) continue;
      for (pid_t p : cg->Pids().value_or(std::vector<pid_t>{})) {
        rss += SmapsKb(p, "Rss");
        pss += SmapsKb(p, "Pss");
      }
      charged += static_cast<double>(cg->MemoryUsage().value_or(0)) / 1024.0;
    }
    state.counters["rss_kib_per_cell"] = rss / kCells;
    state.counters["pss_kib_per_cell"] = pss / kCells;
    state.counters["cgroup_kib_per_cell"] = charged / kCells;
    for (auto& c : cells) (void)backend::Retire(c, env.layout, true, std::chrono::seconds(2));
  }
}
BENCHMARK(BM_IdleMemoryPerCell)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tessera::cell
