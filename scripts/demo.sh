#!/usr/bin/env bash
# The README's first command: installs dependencies, builds tessera, and runs it on
# the built-in example system: validates it, starts tesserad, starts `work`, runs a
# command in it and one in a disposable, lists the qubes, then stops everything.
# Needs root (apt-get, real namespaces, mounts and cgroups).
#
# The demo keeps its state in a private directory so it never touches an existing
# installation (/var/lib/tessera, /run/tessera). Keep it with DEMO_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "== building (first time: a few minutes)"
bash scripts/build.sh default >/dev/null
tessera=$PWD/build/tessera

demo_dir=$(mktemp -d /tmp/tessera-demo-XXXXXX)
export TESSERA_STATE_DIR=$demo_dir/state TESSERA_RUNTIME_DIR=$demo_dir/run
daemon_pid=
finish() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    "$tessera" stop --all >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "(state kept in $demo_dir)"
  else
    rm -rf --one-file-system "$demo_dir"
  fi
}
trap finish EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step tessera config check --example
"$tessera" config check --example && echo "built-in example system is valid"

step "tessera daemon --example &"
"$tessera" daemon --example >"$demo_dir/tesserad.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
  [ -S "$TESSERA_RUNTIME_DIR/admin.sock" ] && "$tessera" ls >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$demo_dir/tesserad.log" >&2; exit 1; }
  sleep 0.1
done
echo "tesserad is running (pid $daemon_pid, log $demo_dir/tesserad.log)"

step tessera start work
"$tessera" start work

step tessera run work -- sh -c '"id; hostname; echo files in /home/user: \$(ls /home/user | wc -l)"'
"$tessera" run work -- sh -c 'id; hostname; echo files in /home/user: $(ls /home/user | wc -l)'

step tessera run --dispvm -- sh -c '"echo hello from disposable \$(hostname); ps"'
"$tessera" run --dispvm -- sh -c 'echo hello from disposable $(hostname); ps'

step tessera ls
"$tessera" ls

step tessera logs work
"$tessera" logs work

step tessera stop --all
"$tessera" stop --all
echo
echo "Done. Next: 'tessera --help', docs/DAEMON.md, and examples/system.toml to declare your own system."
