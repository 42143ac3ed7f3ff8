#!/usr/bin/env bash
# THE test command: installs what the tests need (scripts/deps.sh), then runs
# every check: gofmt, go vet, staticcheck, go test -race (with the .deb and
# container image tests of packaging/), go install. Exits non-zero on
# any failure. Extra arguments are passed to `go test` as flags:
#
#   sudo ./scripts/test-all.sh
#   sudo ./scripts/test-all.sh -run TestServe -v
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# modfiles_sum: checksum of go.mod and go.sum, to prove no check changed them.
modfiles_sum() { cat "$REPO_ROOT/go.mod" "$REPO_ROOT/go.sum" 2>/dev/null | sha256sum; }

main() {
  ensure_root "$@"
  local start=$SECONDS before
  before="$(modfiles_sum)"

  "$SCRIPTS_DIR/deps.sh"
  "$SCRIPTS_DIR/lint.sh"

  setup_go_env
  set_goflags
  cd "$REPO_ROOT"
  section "go test -race"
  # The race detector needs cgo (gcc is installed by deps.sh).
  CGO_ENABLED=1 go test -race -count=1 "$@" ./...

  # go install ...@version from a clean GOPATH, as a user would.
  "$SCRIPTS_DIR/check-go-install.sh"

  [[ "$(modfiles_sum)" == "$before" ]] || die "go.mod or go.sum changed during the checks"
  section "all checks passed in $((SECONDS - start))s"
}

main "$@"
