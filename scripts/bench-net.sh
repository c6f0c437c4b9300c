#!/usr/bin/env bash
# Benchmarks of qubes' network end to end through the real CLI, daemon,
# cells and nftables (docs/NETWORK.md "Numbers"), each beside a baseline
# measured in the same run:
#   1. TCP throughput (iperf3, 5 s) from an app qube through sys-firewall and
#      sys-net to a server in a fake internet namespace, beside iperf3 over a
#      direct veth pair between two namespaces; target >= 70%.
#   2. From `tessera start` of an app qube (its netvms running) to its first
#      successful TCP connect to the internet namespace, p50 over N, beside
#      `tessera start` of an offline qube; target < 50 ms.
#   3. A firewall change on a qube with 1,000 declared rules (`tessera
#      firewall add`, enforced when it returns), beside `nft -f` of the same
#      netvm table in that netvm's namespace; target < 20 ms.
# Usage: sudo scripts/bench-net.sh [BUILD_DIR] [N]
# Everything runs in namespaces this script makes (the daemon's "host" one
# too, so the real host's network is never touched); it removes them, its
# daemon (by pid) and its state at the end. Namespaces are entered with
# `nsenter --net` only: `ip netns exec` also makes a mount namespace, which
# would hold a copy of the qubes' volume mounts after they stop.
set -euo pipefail
BUILD=${1:-build}
N=${2:-20}
T=$(readlink -f "$BUILD/tessera")
[ -x "$T" ] || { echo "no tessera binary in $BUILD" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "needs iperf3 (scripts/install-deps.sh)" >&2; exit 1; }
TIMER=$(readlink -f "$BUILD/tests/bench/time_command")
[ -x "$TIMER" ] || { echo "no $BUILD/tests/bench/time_command (build the default variant)" >&2; exit 1; }

ROOT=$(mktemp -d /tmp/tessera-bench-net-XXXXXX)
export TESSERA_STATE_DIR=$ROOT/state TESSERA_RUNTIME_DIR=$ROOT/run
echo "state dir: $(df -T "$ROOT" | awk 'NR==2 {print $2}') ($ROOT)"
P=tbn$$
HOSTNS=$P-host INET=$P-inet BA=$P-a BB=$P-b
DAEMON= SERVERS=()
cleanup() {
  set +e
  if [ -n "$DAEMON" ]; then
    "$T" kill --all >/dev/null 2>&1
    kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null
  fi
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for ns in "$HOSTNS" "$INET" "$BA" "$BB"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

for ns in "$HOSTNS" "$INET" "$BA" "$BB"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$HOSTNS" link add bnup0 type veth peer name up1 netns "$INET"
ip -n "$INET" addr add 192.0.2.1/24 dev up1
ip -n "$INET" link set up1 up
# The baseline pair: a direct veth between two namespaces.
ip -n "$BA" link add v0 type veth peer name v1 netns "$BB"
ip -n "$BA" addr add 198.51.100.1/24 dev v0
ip -n "$BB" addr add 198.51.100.2/24 dev v1
ip -n "$BA" link set v0 up
ip -n "$BB" link set v1 up

# 1,000 declared rules for sys-firewall's client `many` (none of them
# matches the test's traffic), then accept.
{
  cat <<TOML
[qubes.base]
class = "template"
source = "busybox"

[qubes.sys-net]
class = "app"
template = "base"
provides_network = true
uplink = "bnup0"
uplink_address = "192.0.2.2/24"
uplink_gateway = "192.0.2.1"
uplink_dns = ["192.0.2.1"]
memory = 256

[qubes.sys-firewall]
class = "app"
template = "base"
provides_network = true
netvm = "sys-net"
memory = 256

[qubes.work]
class = "app"
template = "base"
netvm = "sys-firewall"
memory = 256

[qubes.vault]
class = "app"
template = "base"
memory = 256

[qubes.many]
class = "app"
template = "base"
netvm = "sys-firewall"
memory = 256
firewall = [
TOML
  for i in $(seq 0 999); do
    echo "  { action = \"drop\", dsthost = \"10.$((i / 250)).$((i % 250)).0/24\", proto = \"tcp\", dstports = \"$((1000 + i))\" },"
  done
  echo '  { action = "accept" },'
  echo ']'
} > "$ROOT/system.toml"

ms() {
  "$TIMER" --stderr "$ROOT/last.err" -- "$@" || {
    echo "failed: $*: $(cat "$ROOT/last.err")" >&2; tail -5 "$ROOT/daemon.log" >&2; exit 1; }
}
stat_of() {  # percentile p of the numbers in file
  sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.3f", a[i]}'
}
pid_of() {
  "$T" ls --json | python3 -c "import json,sys; print(next(q['pid'] for q in json.load(sys.stdin) if q['name']=='$1'))"
}

nsenter --net=/run/netns/"$HOSTNS" "$T" --config "$ROOT/system.toml" daemon --no-autostart \
  > "$ROOT/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do "$T" ls >/dev/null 2>&1 && break; sleep 0.1; done
"$T" start work >/dev/null
"$T" start many >/dev/null

# 1. Throughput through the chain, beside a direct veth.
iperf() {  # NS_PATH SERVER: bits per second received
  nsenter --net=/run/netns/"$2" iperf3 -s -1 >/dev/null 2>&1 &
  local server=$!
  sleep 0.3
  nsenter --net="$1" iperf3 -c "$3" -t 5 -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
  wait "$server" 2>/dev/null || true
}
WORK_NS=/proc/$(pid_of work)/ns/net
CHAIN=$(iperf "$WORK_NS" "$INET" 192.0.2.1)
DIRECT=$(iperf /run/netns/"$BA" "$BB" 198.51.100.2)
echo "TCP through work -> sys-firewall -> sys-net -> internet (iperf3 -t 5):"
awk -v c="$CHAIN" -v d="$DIRECT" 'BEGIN {
  printf "  %.2f Gbit/s   direct veth between two namespaces %.2f Gbit/s   ratio %.2f (target >= 0.70)\n",
    c / 1e9, d / 1e9, c / d }'

# 2. Start to first connect, beside an offline start.
nsenter --net=/run/netns/"$INET" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(128)
while True:
    c, _ = s.accept(); c.close()' &
SERVERS+=($!)
sleep 0.3
"$T" stop work >/dev/null
python3 - "$T" "$N" "$ROOT" <<'PY'
import json, os, subprocess, sys, time
tessera, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# One prober process for the whole run, started before the first start (no
# fork is timed, and none copies this process's pages while a start runs):
# told a qube's init pid, it enters its network namespace and connects until
# it can; it answers when (perf_counter is CLOCK_MONOTONIC, shared by both).
PROBER = r"""
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
for line in sys.stdin:
    fd = os.open(f"/proc/{int(line)}/ns/net", os.O_RDONLY)
    ok = libc.setns(fd, 0x40000000) == 0
    os.close(fd)
    deadline = time.perf_counter() + 5
    at = 0.0
    while ok and time.perf_counter() < deadline:
        s = socket.socket()
        s.settimeout(0.05)
        try:
            s.connect(("192.0.2.1", 8080)); at = time.perf_counter(); break
        except OSError:
            time.sleep(0.001)
        finally:
            s.close()
    print(at, flush=True)
"""
prober = subprocess.Popen([sys.executable, "-c", PROBER], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
connect, started, offline = [], [], []
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run([tessera, "start", "work"], stdout=subprocess.DEVNULL, check=True)
    t1 = time.perf_counter()
    # The qube's init, from the cell's record (a cheap file read).
    with open(os.path.join(os.environ["TESSERA_RUNTIME_DIR"], "cells/work/cell.json")) as f:
        init = json.load(f)["init_pid"]
    prober.stdin.write(f"{init}\n"); prober.stdin.flush()
    at = float(prober.stdout.readline())
    assert at > 0, "no connection within 5 s"
    connect.append((at - t0) * 1000); started.append((t1 - t0) * 1000)
    subprocess.run([tessera, "stop", "work"], stdout=subprocess.DEVNULL, check=True)
    t0 = time.perf_counter()
    subprocess.run([tessera, "start", "vault"], stdout=subprocess.DEVNULL, check=True)
    offline.append((time.perf_counter() - t0) * 1000)
    subprocess.run([tessera, "stop", "vault"], stdout=subprocess.DEVNULL, check=True)
prober.stdin.close(); prober.wait()
p50 = lambda xs: sorted(xs)[len(xs) // 2]
print(f"tessera start work (netvms running) to its first TCP connect to the internet, over {n}:")
print(f"  p50 {p50(connect):.1f} ms (start returned at {p50(started):.1f} ms)"
      f"   offline qube start p50 {p50(offline):.1f} ms"
      f"   ratio {p50(connect) / p50(offline):.2f} (target < 50 ms)")
PY

# 3. A firewall change with 1,000 rules, beside nft -f of the same table.
FW_NS=/proc/$(pid_of sys-firewall)/ns/net
: > "$ROOT/t-add"; : > "$ROOT/t-nft"
for i in $(seq 1 "$N"); do
  ms "$T" firewall many add drop proto=udp dstports=$((20000 + i)) >> "$ROOT/t-add"
  "$T" firewall many del 1 >/dev/null
  { echo "table inet tessera"; echo "delete table inet tessera"
    nsenter --net="$FW_NS" nft list table inet tessera; } > "$ROOT/table.nft"
  ms nsenter --net="$FW_NS" nft -f "$ROOT/table.nft" >> "$ROOT/t-nft"
done
RULES=$(nsenter --net="$FW_NS" nft list table inet tessera | grep -c 'dport' || true)
A=$(stat_of "$ROOT/t-add" 0.5); B=$(stat_of "$ROOT/t-nft" 0.5)
echo "firewall change on a qube with 1,000 rules ($RULES port matches in sys-firewall's table):"
echo "  tessera firewall add p50 ${A} ms (p99 $(stat_of "$ROOT/t-add" 0.99) ms)" \
  "  nft -f of the same table p50 ${B} ms   ratio $(awk -v a="$A" -v b="$B" 'BEGIN{printf "%.2f", a/b}')" \
  "(target < 20 ms)"
