#!/usr/bin/env bash
# Man pages made from the verbs' own help text, so they never drift from
# the binary (docs/DEVELOPING.md "Man pages"): tessera(1), one
# tessera-VERB(1) per verb `tessera --help` lists, and tesserad(8).
# Usage: scripts/make-man.sh TESSERA TESSERAD OUTDIR
set -euo pipefail
TESSERA=$1 TESSERAD=$2 OUT=$3
mkdir -p "$OUT"
VERSION=$("$TESSERA" version 2>/dev/null | head -1 || echo tessera)
# troff-escapes a help text and keeps its layout.
body() {
  sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/" -e "s|$(dirname "$1")/||g"
}
page() {  # name section summary helptext-command...
  local name=$1 section=$2 summary=$3; shift 3
  {
    echo ".TH $(echo "$name" | tr a-z A-Z) $section \"\" \"$VERSION\" \"tessera\""
    echo ".SH NAME"
    echo "$name \\- $summary"
    echo ".SH DESCRIPTION"
    echo ".nf"
    "$@" --help 2>/dev/null | body "$1"
    echo ".fi"
    echo ".SH SEE ALSO"
    echo "tessera(1), tesserad(8); the documentation in docs/ of the source."
  } > "$OUT/$name.$section"
}
page tessera 1 "security by compartmentalization (Qubes OS model) for Linux" "$TESSERA"
page tesserad 8 "the daemon that owns every qube of the system description" "$TESSERAD"
"$TESSERA" --help | sed -n '/^Subcommands:/,$p' | tail -n +2 | while read -r verb summary; do
  [ -n "$verb" ] || continue
  page "tessera-$verb" 1 "$summary" "$TESSERA" "$verb"
done
