#!/usr/bin/env bash
# The README's first command: installs dependencies, builds tessera, and runs it on
# the built-in example system. Needs root (apt-get; later steps create real cells).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh default >/dev/null
tessera=build/tessera

echo "== tessera config check (built-in example system)"
"$tessera" config check --example
echo
echo "== tessera config show (normalised model)"
"$tessera" config show --example
