#!/usr/bin/env bash
# Run every Fuzz target of the module, one after the other, each for
# FUZZTIME (default 30s). Used by `make fuzz`.
#
#   FUZZTIME=2m ./scripts/fuzz.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

FUZZTIME="${FUZZTIME:-30s}"

main() {
  setup_go_env
  set_goflags
  cd "$REPO_ROOT"

  local listing targets=() target pkg name
  # `go test -list` prints each package's matching names, then "ok  <pkg> ...".
  listing="$(go test -list '^Fuzz' ./...)"
  mapfile -t targets < <(awk '
    /^Fuzz/ { names[n++] = $1; next }
    /^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i] }
    { n = 0 }' <<<"$listing")

  if ((${#targets[@]} == 0)); then
    echo "no Fuzz targets found"
    return
  fi
  for target in "${targets[@]}"; do
    read -r pkg name <<<"$target"
    section "$name ($pkg) for $FUZZTIME"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
  section "fuzzed ${#targets[@]} targets"
}

main "$@"
