#!/usr/bin/env bash
# tesserad under a real systemd (docs/DAEMON.md "Cgroups"): boots this host's
# systemd as PID 1 of new pid, mount, cgroup, net, uts and ipc namespaces, on
# an overlay of / whose changes live in a tmpfs, with a cgroup v2 hierarchy
# of its own (a child of the host's v2 tree), and runs the daemon as a
# systemd service with --cgroups systemd. Checks that:
#   - a started qube is the transient scope tessera-<qube>.scope in
#     tessera.slice (the packaged slice unit), with its limits as properties,
#     its init in the scope's cgroup and the qube seeing "0::/";
#   - the daemon service's cgroup holds the daemon only;
#   - a restart of the daemon service leaves the scope and the qube running,
#     and the new daemon adopts it;
#   - stop removes the scope, start makes a new one; a disposable gets one
#     for its life only;
#   - `systemctl stop` of a qube's scope stops the qube and the daemon sees it.
# Usage: tests/systemd/run.sh BUILD_DIR SOURCE_DIR   (exit 77: skipped, reason printed)
#   SCOPE_BENCH=N  also times N disposable starts (see the end)
set -uo pipefail
BUILD=$(realpath "$1")
SRC=$(realpath "$2")
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (namespaces, mounts, cgroups)"
SYSTEMD=/lib/systemd/systemd
[ -x "$SYSTEMD" ] || skip "no systemd at $SYSTEMD (apt-get install systemd)"
for tool in unshare nsenter findmnt; do
  command -v "$tool" >/dev/null || skip "no $tool"
done
CG2=$(findmnt -n -o TARGET -t cgroup2 | head -1)
[ -n "$CG2" ] || skip "no cgroup v2 mount on this host"

T=$(mktemp -d /var/tmp/tessera-systemd.XXXXXX)
CG="$CG2/tessera-systemd-test.$$"
UNSHARE_PID=""
SD=""  # host pid of the container's systemd
failed=0
fail() { echo "FAIL: $*"; failed=1; }

cleanup() {
  if [ -n "$SD" ] && kill -0 "$SD" 2>/dev/null; then
    kill -s RTMIN+4 "$SD" 2>/dev/null  # poweroff: systemd stops its units and exits
    for _ in $(seq 50); do kill -0 "$SD" 2>/dev/null || break; sleep 0.1; done
  fi
  # Whatever is left dies with the pid namespace's init.
  [ -n "$SD" ] && kill -9 "$SD" 2>/dev/null
  [ -n "$UNSHARE_PID" ] && wait "$UNSHARE_PID" 2>/dev/null
  if [ -d "$CG" ]; then
    for _ in $(seq 50); do
      find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$CG" ] || break
      sleep 0.1
    done
    [ -d "$CG" ] && echo "warning: $CG left behind"
  fi
  rm -rf --one-file-system "$T"
}
trap cleanup EXIT

mkdir -p "$T/state" "$T/rw" "$T/root" /var/lib/tessera-ids
mkdir "$CG" || skip "cannot make a cgroup in $CG2"
cat > "$T/system.toml" <<'EOF'
default_dispvm = "st-dvm"

[qubes.st-base]
class = "template"
source = "busybox"

[qubes.st-work]
class = "app"
template = "st-base"
netvm = "none"
memory = 256
cpus = 1
io_weight = 200
features = { "pids-max" = "300", "cpu-weight" = "50" }

[qubes.st-dvm]
class = "disposable-template"
template = "st-base"
netvm = "none"
memory = 128
EOF

# PID 1 of the new namespaces until it execs systemd.
cat > "$T/init.sh" <<EOF
set -e
R=$T/root
mount -t tmpfs -o mode=0755 tmpfs $T/rw
mkdir $T/rw/upper $T/rw/work
mount -t overlay overlay -o lowerdir=/,upperdir=$T/rw/upper,workdir=$T/rw/work \$R
mount -t proc proc \$R/proc
mount -t sysfs sysfs \$R/sys
mount -t cgroup2 cgroup2 \$R/sys/fs/cgroup
mount --rbind /dev \$R/dev
mount -t tmpfs tmpfs \$R/tmp
# The test's directory (state dir on a real file system, config, logs) and
# the host-wide id registry are shared with the host.
mkdir -p \$R$T && mount --bind $T \$R$T
mount --bind /var/lib/tessera-ids \$R/var/lib/tessera-ids
# The sources and binaries, wherever they are mounted (the overlay holds only
# the root file system).
for d in $SRC $BUILD; do mkdir -p \$R\$d && mount --bind \$d \$R\$d; done
mkdir -p \$R/etc/systemd/system
cp $SRC/packaging/systemd/tessera.slice \$R/etc/systemd/system/
printf '[Unit]\nDescription=tessera systemd test\n' > \$R/etc/systemd/system/tessera-test.target
cd \$R
mkdir .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
export container=tessera-test
exec $SYSTEMD --unit=tessera-test.target --log-target=console --log-level=notice
EOF

(
  echo "$BASHPID" > "$CG/cgroup.procs"
  exec unshare --cgroup --pid --mount --net --uts --ipc --fork --propagation private \
    bash "$T/init.sh" > "$T/systemd.log" 2>&1 < /dev/null
) &
UNSHARE_PID=$!
for _ in $(seq 100); do
  SD=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null | awk '{print $1}')
  [ -n "$SD" ] && [ "$(readlink "/proc/$SD/exe" 2>/dev/null)" = "$(realpath "$SYSTEMD")" ] && break
  sleep 0.1
done
in_() { nsenter -t "$SD" -a -- "$@"; }
state=""
for _ in $(seq 100); do
  state=$(in_ systemctl is-system-running 2>/dev/null)
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
case "$state" in
  running|degraded) echo "systemd up ($state)" ;;
  *) echo "systemd did not come up ($state):"; cat "$T/systemd.log"; exit 1 ;;
esac

tessera() { in_ "$BUILD/tessera" "$@"; }
show() { in_ systemctl show -P "$2" "$1" 2>/dev/null; }
# The daemon as the service tesserad-test; extra arguments go to systemd-run.
start_daemon() {
  in_ systemd-run --quiet --unit=tesserad-test -p Type=notify -p KillMode=process \
    -p "StandardOutput=append:$T/daemon.log" -p "StandardError=append:$T/daemon.log" \
    --setenv=TESSERA_STATE_DIR="$T/state" "$@" \
    "$BUILD/tesserad" --config "$T/system.toml" --cgroups systemd --no-autostart ||
    { fail "the daemon service did not start"; cat "$T/daemon.log"; exit 1; }
}
# A field of a qube in `tessera ls --json` (0 when absent).
field_of() {
  tessera ls --json | python3 -c "import json,sys; print(next((q.get('$2', 0) for q in json.load(sys.stdin) if q['name'] == '$1'), 0))"
}
# The scope units of running disposables.
disp_scopes() {
  in_ systemctl list-units --no-legend --plain --type=scope 'tessera-disp*' | awk '{print $1}'
}

start_daemon
grep -q 'msg="qube cgroups" manager=systemd' "$T/daemon.log" ||
  fail "the daemon does not say it uses systemd: $(grep -i cgroups "$T/daemon.log")"

# A qube is a scope in tessera.slice with its limits.
tessera start st-work || fail "start st-work"
unit=tessera-st-work.scope
[ "$(show $unit ActiveState)" = active ] || fail "$unit is not active: $(show $unit ActiveState)"
[ "$(show $unit Slice)" = tessera.slice ] || fail "$unit not in tessera.slice: $(show $unit Slice)"
[ "$(show tessera.slice FragmentPath)" = /etc/systemd/system/tessera.slice ] ||
  fail "the packaged slice unit is not the one used: $(show tessera.slice FragmentPath)"
[ "$(show $unit MemoryMax)" = $((256 << 20)) ] || fail "MemoryMax: $(show $unit MemoryMax)"
[ "$(show $unit TasksMax)" = 300 ] || fail "TasksMax: $(show $unit TasksMax)"
[ "$(show $unit CPUWeight)" = 50 ] || fail "CPUWeight: $(show $unit CPUWeight)"
[ "$(show $unit CPUQuotaPerSecUSec)" = 1s ] || fail "CPUQuotaPerSecUSec: $(show $unit CPUQuotaPerSecUSec)"
[ "$(show $unit IOWeight)" = 200 ] || fail "IOWeight: $(show $unit IOWeight)"
work_pid=$(field_of st-work pid)
scope_dir=/sys/fs/cgroup/tessera.slice/$unit
in_ grep -qx "$work_pid" "$scope_dir/cgroup.procs" ||
  fail "the qube's init $work_pid is not in $scope_dir: $(in_ cat "$scope_dir/cgroup.procs")"
# Its own cgroup namespace: "0::/" (and "/" for any v1 hierarchy of a hybrid host).
inside=$(tessera run st-work -- cat /proc/self/cgroup)
{ grep -qx '0::/' <<<"$inside" && ! grep -qv ':/$' <<<"$inside"; } ||
  fail "the qube sees cgroups outside its own: $inside"
main_pid=$(show tesserad-test.service MainPID)
service_procs=$(in_ cat /sys/fs/cgroup/system.slice/tesserad-test.service/cgroup.procs | sort | tr '\n' ' ')
[ "$service_procs" = "$main_pid " ] ||
  fail "the daemon's service holds more than the daemon ($main_pid): $service_procs"

# A daemon restart leaves the qube and its scope; the new daemon adopts it.
in_ systemctl restart tesserad-test || fail "restart of the daemon service"
[ "$(show $unit ActiveState)" = active ] || fail "$unit did not survive the daemon's restart"
[ "$(field_of st-work pid)" = "$work_pid" ] ||
  fail "st-work was not adopted (pid $(field_of st-work pid), was $work_pid)"
[ "$(tessera run st-work -- echo adopted)" = adopted ] || fail "run in the adopted qube"

# stop removes the scope; start makes a new one.
tessera stop st-work || fail "stop st-work"
[ "$(show $unit ActiveState)" != active ] || fail "$unit still active after stop"
in_ test -d "$scope_dir" && fail "$scope_dir left after stop"
tessera start st-work || fail "start st-work again"
[ "$(show $unit ActiveState)" = active ] || fail "$unit not active after a new start"

# A disposable has a scope for its life only.
tessera run --dispvm -- sleep 3 > /dev/null &
run_pid=$!
for _ in $(seq 50); do [ -n "$(disp_scopes)" ] && break; sleep 0.1; done
[ -n "$(disp_scopes)" ] || fail "no scope for the disposable"
wait "$run_pid" || fail "tessera run --dispvm"
for _ in $(seq 50); do [ -z "$(disp_scopes)" ] && break; sleep 0.1; done
[ -z "$(disp_scopes)" ] || fail "the disposable's scope outlived it: $(disp_scopes)"

# systemctl stop of a qube's scope stops the qube; the daemon sees it.
in_ systemctl stop "$unit" || fail "systemctl stop $unit"
for _ in $(seq 50); do [ "$(field_of st-work state)" != running ] && break; sleep 0.1; done
[ "$(field_of st-work state)" != running ] || fail "st-work still 'running' after its scope was stopped"
tessera start st-work || fail "start st-work after systemctl stop"
[ "$(show $unit ActiveState)" = active ] || fail "$unit not active after the start that followed"

# SCOPE_BENCH=N: N whole `tessera run --dispvm -- true` runs against this
# daemon, and the share of each start spent making the scope (the cell's
# "unit" phase, from the daemon's debug log).
if [ "${SCOPE_BENCH:-0}" -gt 0 ]; then
  in_ systemctl stop tesserad-test
  : > "$T/daemon.log"
  start_daemon --setenv=TESSERA_LOG_LEVEL=debug
  tessera run --dispvm -- true  # the template and the first snapshot are made once
  for _ in $(seq "$SCOPE_BENCH"); do
    s=$(date +%s%N); tessera run --dispvm -- true; e=$(date +%s%N)
    echo $(( (e - s) / 1000 ))
  done | sort -n | awk '{a[NR] = $1} END {printf "run --dispvm true: median %.2f ms over %d runs\n", a[int((NR + 1) / 2)] / 1000, NR}'
  grep -o 'qube=disp[0-9]* .*phases_ms="[^"]*"' "$T/daemon.log" | grep -o ' unit=[0-9.]*' | cut -d= -f2 |
    sort -n | awk '{a[NR] = $1} END {printf "scope creation (StartTransientUnit to JobRemoved): median %.2f ms over %d starts\n", a[int((NR + 1) / 2)], NR}'
fi

tessera stop st-work > /dev/null 2>&1
in_ systemctl stop tesserad-test
# A sanitizer build's findings go to the daemon's log, not to a test's status.
if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T/daemon.log"; then
  fail "sanitizer findings in the daemon:"; grep -A30 'ERROR: \|runtime error:' "$T/daemon.log" | head -60
fi
if [ $failed = 0 ]; then echo "systemd scopes: ok"; else echo "--- daemon log"; tail -30 "$T/daemon.log"; fi
exit $failed
