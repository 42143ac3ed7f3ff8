#!/usr/bin/env bash
# Static checks: gofmt, go vet, staticcheck (pinned; install it with
# scripts/deps.sh). Needs no root. Used by scripts/test-all.sh and `make lint`.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# go_files: NUL-separated .go files of the repository, tracked or new (not
# ignored), without testdata and vendor trees.
go_files() {
  local f
  if git -c safe.directory="$REPO_ROOT" -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c safe.directory="$REPO_ROOT" -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard --deduplicate -- '*.go'
  else
    (cd "$REPO_ROOT" && find . -name .git -prune -o -type f -name '*.go' -printf '%P\0')
  fi | while IFS= read -r -d '' f; do
    [[ -f $REPO_ROOT/$f ]] || continue # deleted in the work tree
    case "/$f" in
    */testdata/* | /vendor/*) continue ;;
    esac
    printf '%s\0' "$f"
  done
}

check_gofmt() {
  section "gofmt"
  local files=() unformatted
  mapfile -d '' files < <(go_files)
  if ((${#files[@]} == 0)); then
    echo "no .go files"
    return
  fi
  unformatted="$(cd "$REPO_ROOT" && gofmt -l -- "${files[@]}")" || die "gofmt failed (syntax errors above)"
  if [[ -n $unformatted ]]; then
    printf '%s\n' "$unformatted" >&2
    die "these files are not gofmt-formatted (fix: gofmt -w FILE)"
  fi
  echo "${#files[@]} files formatted"
}

main() {
  setup_go_env
  set_goflags
  cd "$REPO_ROOT"

  check_gofmt

  section "go vet"
  go vet ./...

  section "staticcheck"
  staticcheck_ok || die "staticcheck $STATICCHECK_VERSION not installed in $GOBIN_DIR: run sudo ./scripts/deps.sh (or go install honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION)"
  "$GOBIN_DIR/staticcheck" ./...
}

main "$@"
