#!/usr/bin/env bash
# Benchmarks of inter-qube RPC end to end through the real CLI, daemon, cells
# and tessera-call (docs/RPC.md "Numbers"), each beside a baseline measured
# in the same run:
#   1. a trivial call between two running qubes, as the user sees it:
#      `tessera run work -- tessera-call personal test.True`, p50/p99 over N,
#      beside the floor of two bare process starts in cells (`tessera run
#      work true` + `tessera run personal true`, paired); target p50 <= 2x.
#   2. SIZE MiB from one qube to another and back through a `cat` service,
#      beside `cat` between two processes over a Unix socket pair on this
#      host (both into `wc -c`); and a SIZE MiB file through qubes.Filecopy
#      (`tessera-copy --to personal`, written into the target's private
#      volume), beside `cat` over a socket pair into a file on the same disk;
#      target >= 50%.
#   3. 100 calls at once from one qube: all complete; p50/p99 of their
#      durations as the daemon's audit lines give them.
# Usage: sudo scripts/bench-rpc.sh [BUILD_DIR] [N] [SIZE_MIB]
# Runs a private daemon with temporary state/runtime dirs (state on disk, as
# /var/lib/tessera); stops everything it started (by pid) at the end.
set -euo pipefail
BUILD=${1:-build}
N=${2:-200}
SIZE=${3:-1024}
source "$(dirname "$0")/bench-common.sh"
bench_setup rpc
mkdir -p "$ROOT/policy.d"

cat > "$ROOT/system.toml" <<TOML
policy_dir = "$ROOT/policy.d"

[qubes.base]
class = "template"
source = "busybox"

[qubes.work]
class = "app"
template = "base"
memory = 512
private_size = "4G"

[qubes.personal]
class = "app"
template = "base"
memory = 512
private_size = "4G"
TOML
cat > "$ROOT/policy.d/50-bench.policy" <<'POLICY'
test.True       *  work  personal  allow
test.Cat        *  work  personal  allow
qubes.Filecopy  *  work  personal  allow
POLICY


bench_start_daemon --no-autostart
"$T" run -u root personal -- /bin/sh -c 'mkdir -p /usr/local/etc/qubes-rpc &&
  printf "#!/bin/sh\nexit 0\n" > /usr/local/etc/qubes-rpc/test.True &&
  printf "#!/bin/sh\nexec cat\n" > /usr/local/etc/qubes-rpc/test.Cat &&
  chmod 755 /usr/local/etc/qubes-rpc/*'
"$T" start work >/dev/null
"$T" run work -- tessera-call personal test.True  # warm up

# 1. A trivial call, paired with its floor.
: > "$ROOT/t-call"; : > "$ROOT/t-floor"
for _ in $(seq 1 "$N"); do
  ms "$T" run work -- tessera-call personal test.True >> "$ROOT/t-call"
  a=$(ms "$T" run work true); b=$(ms "$T" run personal true)
  awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f\n", a+b}' >> "$ROOT/t-floor"
done
C=$(stat_of "$ROOT/t-call" 0.5); C99=$(stat_of "$ROOT/t-call" 0.99)
F=$(stat_of "$ROOT/t-floor" 0.5)
echo "trivial call work -> personal (tessera run work -- tessera-call personal test.True):"
echo "  p50 ${C} ms  p99 ${C99} ms   floor (two runs of true in cells) p50 ${F} ms" \
  "  ratio $(awk -v c="$C" -v f="$F" 'BEGIN{printf "%.2f", c/f}') (target <= 2; Qubes ~260 ms per call)"

# 2. Throughput: SIZE MiB there and back through a cat service.
head -c "$((SIZE << 20))" /dev/urandom > "$ROOT/blob"
python3 - "$T" "$ROOT/blob" "$SIZE" <<'PY'
import socket, subprocess, sys, time
tessera, blob, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
want = str(size << 20).encode()
def rpc():
    # The same sink for both: wc -c of what came back.
    t = time.perf_counter()
    out = subprocess.run(f"{tessera} run work -- tessera-call personal test.Cat < {blob} | wc -c",
                         shell=True, stdout=subprocess.PIPE, check=True).stdout.strip()
    took = time.perf_counter() - t
    assert out == want, out
    return took
def socketpair_cat():
    a, b = socket.socketpair()
    t = time.perf_counter()
    with open(blob, "rb") as src:
        w = subprocess.Popen(["cat"], stdin=src, stdout=a)
        r = subprocess.Popen("cat | wc -c", shell=True, stdin=b, stdout=subprocess.PIPE)
        a.close(); b.close()
        out = r.stdout.read().strip()
        w.wait(); r.wait()
    assert out == want, out
    return time.perf_counter() - t
rpcs, bases = [], []
for _ in range(3):
    rpcs.append(rpc()); bases.append(socketpair_cat())
r, b = sorted(rpcs)[1], sorted(bases)[1]
print(f"{size} MiB work -> personal -> work through test.Cat: {r:.2f} s ({size / r:.0f} MiB/s each way)")
print(f"  cat over a Unix socket pair: {b:.2f} s ({size / b:.0f} MiB/s)   ratio {b / r:.2f} (target >= 0.5)")
PY

# 2b. qubes.Filecopy of a SIZE MiB file (written to the target's volume).
"$T" run work -- /bin/sh -c 'cat > blob' < "$ROOT/blob"
: > "$ROOT/t-copy"; : > "$ROOT/t-copybase"
for _ in 1 2 3; do
  "$T" run personal -- rm -rf QubesIncoming
  ms "$T" run work -- tessera-copy --to personal blob >> "$ROOT/t-copy"
  rm -f "$ROOT/copy-out"
  ms python3 -c '
import socket, subprocess, sys
a, b = socket.socketpair()
w = subprocess.Popen(["cat", sys.argv[1]], stdout=a)
r = subprocess.Popen(["cat"], stdin=b, stdout=open(sys.argv[2], "wb"))
a.close(); b.close(); w.wait(); r.wait()' "$ROOT/blob" "$ROOT/copy-out" >> "$ROOT/t-copybase"
  sync
done
got=$("$T" run personal -- wc -c QubesIncoming/work/blob | awk '{print $1}')
[ "$got" = "$((SIZE << 20))" ] || { echo "filecopy delivered $got bytes" >&2; exit 1; }
CP=$(stat_of "$ROOT/t-copy" 0.5); CB=$(stat_of "$ROOT/t-copybase" 0.5)
echo "qubes.Filecopy of ${SIZE} MiB (tessera-copy --to personal): ${CP} ms" \
  "($(awk -v s="$SIZE" -v t="$CP" 'BEGIN{printf "%.0f", s*1000/t}') MiB/s)"
echo "  cat over a Unix socket pair into a file: ${CB} ms" \
  "($(awk -v s="$SIZE" -v t="$CB" 'BEGIN{printf "%.0f", s*1000/t}') MiB/s)" \
  "  ratio $(awk -v c="$CP" -v b="$CB" 'BEGIN{printf "%.2f", b/c}') (target >= 0.5; Qubes users report 20-50 MB/s)"

# 3. 100 calls at once from one qube.
before=$(grep -c '"kind":"rpc"' "$TESSERA_STATE_DIR/audit/audit.log" || true)
start=$(date +%s%N)
"$T" run work -- /bin/sh -c 'i=0; while [ $i -lt 100 ]; do
  (tessera-call personal test.True || echo fail) & i=$((i+1)); done; wait' > "$ROOT/concurrent.out"
end=$(date +%s%N)
fails=$(grep -c fail "$ROOT/concurrent.out" || true)
grep '"kind":"rpc"' "$TESSERA_STATE_DIR/audit/audit.log" | tail -n +"$((before + 1))" |
  grep -o '"duration_ms":[0-9.]*' | cut -d: -f2 > "$ROOT/t-conc"
echo "100 concurrent calls from one qube: $((100 - fails)) of 100 completed in" \
  "$(( (end - start) / 1000000 )) ms; per call (daemon's audit) p50 $(stat_of "$ROOT/t-conc" 0.5) ms" \
  "p99 $(stat_of "$ROOT/t-conc" 0.99) ms (Qubes fails above ~10-25)"
