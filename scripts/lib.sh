# shellcheck shell=bash
# Helpers shared by the scripts in this directory. Source it; do not run it.

# Repository root (physical path), whatever the caller's working directory.
REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck disable=SC2034 # used by the scripts that source this file
SCRIPTS_DIR="$REPO_ROOT/scripts"

# Pinned Go tools.
STATICCHECK_VERSION=0.8.2

section() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# ensure_root "$@": re-execute the calling script as root through sudo.
ensure_root() {
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "must run as root (and sudo is not installed)"
    exec sudo -- "$(readlink -f -- "$0")" "$@"
  fi
}

# setup_go_env: put Go and the directory `go install` writes to on PATH
# (sudo and CI shells often lack both), and export GOBIN_DIR.
setup_go_env() {
  local godir=/usr/local/go/bin
  if [[ -x $godir/go && :$PATH: != *:$godir:* ]]; then
    PATH="$godir:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go not found (expected it in /usr/local/go/bin)"
  GOBIN_DIR="$(go env GOBIN)"
  if [[ -z $GOBIN_DIR ]]; then
    GOBIN_DIR="$(go env GOPATH)"
    GOBIN_DIR="${GOBIN_DIR%%:*}/bin"
  fi
  if [[ :$PATH: != *:$GOBIN_DIR:* ]]; then
    PATH="$GOBIN_DIR:$PATH"
  fi
  export PATH GOBIN_DIR
}

# set_goflags: keep whatever GOFLAGS are configured (environment or go env
# file) but force -mod=readonly, so no check can rewrite go.mod or go.sum.
set_goflags() {
  local flag kept=() current
  read -r -a current <<<"$(go env GOFLAGS)"
  for flag in "${current[@]}"; do
    [[ $flag == -mod=* ]] || kept+=("$flag")
  done
  kept+=(-mod=readonly)
  GOFLAGS="${kept[*]}"
  export GOFLAGS
}

# staticcheck_ok: the pinned staticcheck is installed in GOBIN_DIR.
staticcheck_ok() {
  local out
  out="$("$GOBIN_DIR/staticcheck" -version 2>/dev/null)" || return 1
  [[ $out == *"($STATICCHECK_VERSION)"* ]]
}
