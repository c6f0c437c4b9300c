#!/usr/bin/env bash
# The code between clone and the agent's exec (src/cell/child_setup.cc) must be
# async-signal-safe: no malloc/new/free, no stdio, no locks. This check lists
# the symbols its object file leaves undefined (what it calls outside itself)
# and fails on any that child_setup_symbols.allow does not list.
#
#   child_setup_symbols.sh NM "OBJECTS" ALLOWLIST SANITIZED
#     NM         the toolchain's nm
#     OBJECTS    $<TARGET_OBJECTS:tessera_cell> (';'-separated); the one built
#                from child_setup.cc is checked
#     ALLOWLIST  one symbol per line as `nm -C` prints it; '#' starts a comment
#     SANITIZED  ON in ASan/UBSan/fuzz builds: __asan_*, __ubsan_*,
#                __sanitizer_* (and the coverage hooks) are allowed too
set -euo pipefail
nm_tool=$1
objects=$2
allowlist=$3
sanitized=$4

object=""
IFS=';' read -ra candidates <<< "$objects"
for candidate in "${candidates[@]}"; do
  case "$candidate" in
    */child_setup.cc.o | */child_setup.cc.obj) object=$candidate ;;
  esac
done
if [[ -z "$object" || ! -f "$object" ]]; then
  echo "child_setup_symbols: no object of child_setup.cc among: $objects" >&2
  exit 1
fi

undefined=$("$nm_tool" -C -u "$object")
allowed=$(sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$allowlist" | grep -v '^$' || true)

bad=()
while IFS= read -r line; do
  [[ -z "$line" ]] && continue
  symbol=$(sed -e 's/^[[:space:]]*[Uw][[:space:]]*//' <<< "$line")
  if [[ "$sanitized" == "ON" || "$sanitized" == "1" || "$sanitized" == "TRUE" ]]; then
    case "$symbol" in
      __asan_* | __ubsan_* | __sanitizer_* | __sancov_* | __start___sancov_* | __stop___sancov_*) continue ;;
    esac
  fi
  if ! grep -qxF -- "$symbol" <<< "$allowed"; then
    bad+=("$symbol")
  fi
done <<< "$undefined"

if ((${#bad[@]} > 0)); then
  echo "child_setup.cc calls symbols that are not on the async-signal-safe allow-list" >&2
  echo "($allowlist); after clone the child must not allocate, log or lock:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "child_setup.cc: $(grep -c . <<< "$undefined") undefined symbols, all allowed ($object)"
