# Sourced by the whole-process benchmarks (bench-daemon.sh, bench-rpc.sh,
# bench-nix-template.sh): the checks, a private state dir on disk and runtime
# dir on tmpfs (as /var/lib/tessera and /run/tessera are on a real host), the
# cleanup of everything started (by pid), and the timing helpers.
#   BUILD=build; source "$(dirname "$0")/bench-common.sh"
#   bench_setup rpc            # ROOT, T, TIMER; TESSERA_*_DIR exported
#   bench_start_daemon         # DAEMON: a private daemon on $ROOT/system.toml
#   ms "$T" run work true >> "$ROOT/t-run"; stat_of "$ROOT/t-run" 0.5

bench_setup() {  # NAME: what the temporary directory is called after
  T=$(readlink -f "$BUILD/tessera")
  [ -x "$T" ] || { echo "no tessera binary in $BUILD" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
  TIMER=$(readlink -f "$BUILD/tests/bench/time_command")
  [ -x "$TIMER" ] || { echo "no $BUILD/tests/bench/time_command (build the default variant)" >&2; exit 1; }
  ROOT=$(mktemp -d "/var/tmp/tessera-bench-$1-XXXXXX")
  export TESSERA_STATE_DIR=$ROOT/state TESSERA_RUNTIME_DIR=$ROOT/run
  echo "state dir: $(df -T "$ROOT" | awk 'NR==2 {print $2}') ($ROOT)"
  mkdir -p "$ROOT/run"
  RUN_TMPFS=0
  mount -t tmpfs -o mode=0755,size=512m tessera-bench "$ROOT/run" && RUN_TMPFS=1
  DAEMON=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  set +e
  if [ -n "$DAEMON" ]; then
    "$T" kill --all >/dev/null 2>&1
    kill "$DAEMON" 2>/dev/null; wait "$DAEMON" 2>/dev/null
  fi
  [ "$RUN_TMPFS" = 1 ] && umount -l "$ROOT/run"
  rm -rf --one-file-system "$ROOT"
}

bench_start_daemon() {  # extra daemon arguments
  "$T" --config "$ROOT/system.toml" daemon "$@" > "$ROOT/daemon.log" 2>&1 &
  DAEMON=$!
  for _ in $(seq 100); do "$T" ls >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the daemon did not come up: $(tail -5 "$ROOT/daemon.log")" >&2
  exit 1
}

# Milliseconds of one command from spawn to exit, timed by a spawned helper
# (tests/bench/time_command), so the shell's own fork is not counted.
ms() {
  "$TIMER" --stderr "$ROOT/last.err" -- "$@" || {
    echo "failed: $*: $(cat "$ROOT/last.err")" >&2; tail -5 "$ROOT/daemon.log" >&2; exit 1; }
}

stat_of() {  # FILE P: percentile P of the numbers in FILE
  sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((NR-1)*p+0.5)+1; printf "%.3f", a[i]}'
}
