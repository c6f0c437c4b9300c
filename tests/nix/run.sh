#!/usr/bin/env bash
# The Nix side of tessera without nixpkgs (docs/NIXOS.md "Tests"):
#   1. every .nix file of the project parses;
#   2. nix/to-system.nix maps each tests/nix/cases/<case>.cfg.nix to exactly
#      <case>.expected.json, and `tessera config check` accepts the result;
#   3. its defaults are the description's own (`config show --json` of the
#      mapped minimal case equals that of the same qubes with no keys set);
#   4. each tests/nix/errors/<case>.cfg.nix fails with the message in
#      <case>.error (the option's path first);
#   5. with TESSERA_NIXPKGS_LIB=/path/to/nixpkgs/lib: nix/module.nix through
#      the real module system (tests/nix/eval-module.nix); skipped otherwise.
# Usage: tests/nix/run.sh TESSERA_BINARY   (exit 77: skipped, no nix-instantiate)
set -uo pipefail
TESSERA=${1:?usage: run.sh TESSERA_BINARY}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if ! command -v nix-instantiate >/dev/null; then
  echo "skipped: nix-instantiate is not installed (Debian: nix-bin)"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }
eval_nix() {  # expression -> stdout JSON; stderr to $TMP/err (complete on return)
  local rc=0
  nix-instantiate --eval --strict --json --readonly-mode -E "$1" 2> "$TMP/err.raw" || rc=$?
  grep -v "build-users-group" "$TMP/err.raw" > "$TMP/err" || true
  return $rc
}
same_json() {
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)' "$1" "$2"
}

# 1. Every .nix parses.
n=0
while IFS= read -r f; do
  n=$((n + 1))
  nix-instantiate --parse "$f" >/dev/null 2>"$TMP/err" || fail "$f does not parse: $(cat "$TMP/err")"
done < <(find "$ROOT/nix" "$ROOT/examples" "$ROOT/tests/nix" "$ROOT/flake.nix" -name '*.nix')
echo "parsed $n .nix files"

# 2. Golden cases.
for cfg in "$HERE"/cases/*.cfg.nix; do
  name=$(basename "$cfg" .cfg.nix)
  out="$TMP/$name.json"
  if ! eval_nix "import $ROOT/nix/to-system.nix (import $cfg)" > "$out"; then
    fail "$name: evaluation failed: $(cat "$TMP/err")"
    continue
  fi
  same_json "$out" "$HERE/cases/$name.expected.json" ||
    fail "$name: to-system.nix gave $(cat "$out"), not cases/$name.expected.json"
  "$TESSERA" config check "$out" > "$TMP/check" 2>&1 || fail "$name: tessera config check: $(cat "$TMP/check")"
  echo "$name: matches; $(cat "$TMP/check")"
done

# 3. The defaults are the description's.
cat > "$TMP/bare.toml" <<'TOML'
[qubes.base]
class = "template"
source = "busybox"
[qubes.work]
template = "base"
[qubes.dvm]
class = "disposable-template"
template = "base"
TOML
"$TESSERA" config show --json "$TMP/defaults.json" > "$TMP/mapped.norm" 2>&1 &&
  "$TESSERA" config show --json "$TMP/bare.toml" > "$TMP/bare.norm" 2>&1 &&
  same_json "$TMP/mapped.norm" "$TMP/bare.norm" ||
  fail "defaults differ from the description's: $(diff "$TMP/mapped.norm" "$TMP/bare.norm" | head -20)"
echo "defaults: the description's own"

# 4. Errors name the option.
for cfg in "$HERE"/errors/*.cfg.nix; do
  name=$(basename "$cfg" .cfg.nix)
  want=$(cat "$HERE/errors/$name.error")
  if eval_nix "import $ROOT/nix/to-system.nix (import $cfg)" > /dev/null; then
    fail "$name: evaluated, but should fail with: $want"
  elif ! grep -qF -- "$want" "$TMP/err"; then
    fail "$name: wrong error: $(cat "$TMP/err") (wanted: $want)"
  fi
done
echo "errors: $(ls "$HERE"/errors/*.cfg.nix | wc -l) cases"

# 5. The real module system, when a nixpkgs lib is at hand.
if [ -n "${TESSERA_NIXPKGS_LIB:-}" ]; then
  lib="import ${TESSERA_NIXPKGS_LIB}"
  if eval_nix "import $HERE/eval-module.nix { lib = $lib; }" > "$TMP/module.json"; then
    python3 - "$TMP/module.json" <<'PY' || fail "module: its description is not to-system.nix's, or an assertion failed: $(cat "$TMP/module.json")"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["module"] == d["direct"] and d["failedAssertions"] == [] else 1)
PY
    echo "module: evaluated through nixpkgs' lib; its description is to-system.nix's"
  else
    fail "module: $(cat "$TMP/err")"
  fi
  bad="(import $HERE/module.cfg.nix) // { qubes.work = { memory = 0; }; }"
  if eval_nix "(import $HERE/eval-module.nix { lib = $lib; cfg = $bad; }).module" > /dev/null; then
    fail "module: memory = 0 was accepted"
  elif ! grep -q "services.tessera.qubes.work.memory" "$TMP/err"; then
    fail "module: memory = 0 gave $(cat "$TMP/err")"
  fi
else
  echo "module system: skipped: TESSERA_NIXPKGS_LIB is not set (a nixpkgs lib/ directory; never committed)"
fi
exit $failed
