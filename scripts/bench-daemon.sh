#!/usr/bin/env bash
# Benchmarks of tesserad end to end through the real CLI (docs/DAEMON.md):
#   0. `tessera cell run --dispvm dvm -- /bin/true` (no daemon: one whole
#      process that plans, prepares storage, starts, runs, stops and destroys
#      a disposable) vs the bwrap baseline, interleaved; target ratio <= 2.
#   1. `tessera run --dispvm true` vs the bwrap baseline
#      (`bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc /bin/true`),
#      median over N runs each, interleaved in the same run; target ratio <= 3.
#   2. `tessera run work true` on a running qube: p50 (target < 2 ms).
#   3. 100 running cells: `tessera ls` p99 (target < 50 ms) and host memory per
#      cell (MemAvailable before/after starting them, divided by the count).
# Usage: sudo scripts/bench-daemon.sh [BUILD_DIR] [N] [CELLS]
# Runs a private daemon with temporary state/runtime dirs; stops everything it
# started (by pid) at the end.
set -euo pipefail
BUILD=${1:-build}
N=${2:-50}
CELLS=${3:-100}
source "$(dirname "$0")/bench-common.sh"
bench_setup daemon

{
  printf 'default_dispvm = "dvm"\n\n[qubes.base]\nclass = "template"\nsource = "busybox"\n\n'
  printf '[qubes.dvm]\nclass = "disposable-template"\ntemplate = "base"\nnetvm = "none"\nmemory = 256\n\n'
  printf '[qubes.dvm-pre]\nclass = "disposable-template"\ntemplate = "base"\nnetvm = "none"\nmemory = 256\nfeatures = { "preload-dispvm-max" = "1" }\n\n'
  printf '[qubes.work]\nclass = "app"\ntemplate = "base"\nnetvm = "none"\nmemory = 256\n\n'
  for i in $(seq 1 "$CELLS"); do
    printf '[qubes.c%03d]\nclass = "app"\ntemplate = "base"\nnetvm = "none"\nmemory = 64\n\n' "$i"
  done
} > "$ROOT/system.toml"

BWRAP=(bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc /bin/true)

# 0. The whole-process disposable, before the daemon owns the state dir.
"$T" --config "$ROOT/system.toml" cell run --dispvm dvm -- /bin/true  # warm up: builds the template
: > "$ROOT/t-cell"; : > "$ROOT/t-bwrap0"
for _ in $(seq 1 "$N"); do
  ms "$T" --config "$ROOT/system.toml" cell run --dispvm dvm -- /bin/true >> "$ROOT/t-cell"
  ms "${BWRAP[@]}" >> "$ROOT/t-bwrap0"
done
C=$(stat_of "$ROOT/t-cell" 0.5); B0=$(stat_of "$ROOT/t-bwrap0" 0.5)
echo "cell run --dispvm /bin/true (whole process, no daemon): median ${C} ms   bwrap median ${B0} ms" \
  "  ratio $(awk -v d="$C" -v b="$B0" 'BEGIN{printf "%.2f", d/b}') (target <= 2)"

bench_start_daemon --no-autostart

"$T" run --dispvm true  # warm up: builds the template
: > "$ROOT/t-disp"; : > "$ROOT/t-bwrap"
for _ in $(seq 1 "$N"); do
  ms "$T" run --dispvm true >> "$ROOT/t-disp"
  ms "${BWRAP[@]}" >> "$ROOT/t-bwrap"
done
D=$(stat_of "$ROOT/t-disp" 0.5); B=$(stat_of "$ROOT/t-bwrap" 0.5)
echo "run --dispvm true (cold):      median ${D} ms   bwrap baseline median ${B} ms   ratio $(awk -v d="$D" -v b="$B" 'BEGIN{printf "%.2f", d/b}') (target <= 3)"

# Preloaded: wait until the pool holds a running disposable again (interactive
# use: one disposable at a time), then time the run.
: > "$ROOT/t-pre"; : > "$ROOT/t-bwrap2"
for _ in $(seq 1 "$N"); do
  for _ in $(seq 200); do
    "$T" ls --json | awk '/"name": "disp/{d=1} d&&/"state": "running"/{print; exit}' | grep -q running && break
    sleep 0.02
  done
  ms "$T" run --dispvm=dvm-pre true >> "$ROOT/t-pre"
  ms "${BWRAP[@]}" >> "$ROOT/t-bwrap2"
done
P=$(stat_of "$ROOT/t-pre" 0.5); B2=$(stat_of "$ROOT/t-bwrap2" 0.5)
echo "run --dispvm true (preloaded): median ${P} ms   bwrap baseline median ${B2} ms   ratio $(awk -v d="$P" -v b="$B2" 'BEGIN{printf "%.2f", d/b}') (target <= 3)"

"$T" start work
: > "$ROOT/t-run"
# Beside it: `tessera version` (starting the CLI process at all) and a bare
# static `true` (any process start on this machine; `run` needs two: the CLI
# and the command in the qube).
: > "$ROOT/t-ver"; : > "$ROOT/t-true"
BARE_TRUE=$(command -v busybox || command -v true)
for _ in $(seq 1 "$((N * 4))"); do
  ms "$T" run work true >> "$ROOT/t-run"
  ms "$T" version >> "$ROOT/t-ver"
  ms "$BARE_TRUE" true >> "$ROOT/t-true"
done
echo "run work true:       p50 $(stat_of "$ROOT/t-run" 0.5) ms   p99 $(stat_of "$ROOT/t-run" 0.99) ms (target p50 < 2 ms)"
echo "  baselines: tessera version (CLI process start) p50 $(stat_of "$ROOT/t-ver" 0.5) ms;" \
  "$(basename "$BARE_TRUE") true (bare process start) p50 $(stat_of "$ROOT/t-true" 0.5) ms"
echo "  run p50 minus both baselines (what the daemon, the agent and their IPC add):" \
  "$(awk -v r="$(stat_of "$ROOT/t-run" 0.5)" -v v="$(stat_of "$ROOT/t-ver" 0.5)" \
       -v t="$(stat_of "$ROOT/t-true" 0.5)" 'BEGIN{printf "%.3f", r-v-t}') ms"
# The daemon's share without any process start: qube.run and qube.list over
# one admin connection (fds passed with SCM_RIGHTS, as the CLI does).
python3 - "$TESSERA_RUNTIME_DIR/admin.sock" <<'PY'
import array, json, os, socket, struct, sys, time
# Admin protocol v2 (docs/DAEMON.md): 12-byte little-endian header
# (length, session, type, stream, nfds, reserved), fds with the frame.
REQUEST, RESPONSE = 2, 3
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
null = os.open("/dev/null", os.O_RDWR)
def call(i, method, params, fds=()):
    body = json.dumps({"v": 2, "id": i, "method": method, "params": params}).encode()
    frame = struct.pack("<IIBBBB", len(body), 0, REQUEST, 0, len(fds), 0) + body
    if fds:
        s.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        s.sendall(frame)
    while True:
        n, _, ftype, _, _, _ = struct.unpack("<IIBBBB", s.recv(12, socket.MSG_WAITALL))
        payload = s.recv(n, socket.MSG_WAITALL) if n else b""
        if ftype == RESPONSE:
            r = json.loads(payload); assert r["ok"], r
            return
for method, params, fds in [("qube.run", {"qube": "work", "argv": ["true"]}, (null,) * 3),
                            ("qube.list", {}, ())]:
    ts = []
    for i in range(1, 201):
        t0 = time.perf_counter(); call(i, method, params, fds); ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    print("  protocol only, %-9s p50 %.2f ms   p99 %.2f ms" % (method, ts[100], ts[197]))
PY

avail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
BEFORE=$(avail)
T0=$EPOCHREALTIME
for i in $(seq 1 "$CELLS"); do printf 'c%03d\n' "$i"; done | xargs -P 4 -n 10 "$T" start || echo "(some starts failed; see above)"
T1=$EPOCHREALTIME
AFTER=$(avail)
RUNNING=$("$T" ls | awk '$3=="running"' | wc -l)
echo "started $CELLS cells in $(echo "$T0 $T1" | awk '{printf "%.1f", $2-$1}') s; running qubes now: $RUNNING"
: > "$ROOT/t-ls"
for _ in $(seq 1 200); do ms "$T" ls >> "$ROOT/t-ls"; done
echo "ls with $RUNNING running: p50 $(stat_of "$ROOT/t-ls" 0.5) ms   p99 $(stat_of "$ROOT/t-ls" 0.99) ms (target p99 < 50 ms)"
echo "host memory per cell: $(( (BEFORE - AFTER) / CELLS )) KiB (MemAvailable delta / $CELLS)"
DPID=$DAEMON
echo "tesserad RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$DPID/status)"
