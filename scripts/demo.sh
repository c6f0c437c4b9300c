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

# The RPC policy lives in policy_dir, /etc/tessera/policy.d, where
# `cmake --install` puts the default policy; without it every call between
# qubes is refused.
if [ ! -d /etc/tessera/policy.d ]; then
  step install -D -m 644 policy.d/90-default.policy /etc/tessera/policy.d/90-default.policy
  install -D -m 644 policy.d/90-default.policy /etc/tessera/policy.d/90-default.policy
fi

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

# Qubes talk only through RPC calls the policy allows: the default policy
# (installed above) and, searched first, the runtime policy directory, where
# this demo's rules go.
step "policy: work may copy files to personal; a paste from work to personal asks"
mkdir -p "$TESSERA_RUNTIME_DIR/policy.d"
printf '%s\n' 'qubes.Filecopy        *  work  personal  allow' \
  'qubes.ClipboardPaste  *  work  personal  ask' | tee "$TESSERA_RUNTIME_DIR/policy.d/50-demo.policy"
sleep 0.3  # the daemon reloads the policy on its own (inotify)

step tessera run work -- sh -c '"echo quarterly numbers > report.txt && tessera-copy --to personal report.txt"'
"$tessera" run work -- sh -c 'echo quarterly numbers > report.txt && tessera-copy --to personal report.txt'
step tessera run personal -- cat QubesIncoming/work/report.txt
"$tessera" run personal -- cat QubesIncoming/work/report.txt

step tessera run vault -- tessera-call personal qubes.Filecopy '   # no rule: refused'
"$tessera" run vault -- tessera-call personal qubes.Filecopy </dev/null || echo "(exit status $?)"

step "tessera clipboard copy --from work && tessera clipboard paste --to personal"
"$tessera" run work -- sh -c 'echo s3cret | tessera-clipboard set'
"$tessera" clipboard copy --from work
"$tessera" clipboard paste --to personal
"$tessera" run personal -- tessera-clipboard get

step tessera ls
"$tessera" ls

step tessera logs work
"$tessera" logs work

step tessera stop --all
"$tessera" stop --all
echo
echo "Done. Next: 'tessera --help', docs/DAEMON.md, and examples/system.toml to declare your own system."
