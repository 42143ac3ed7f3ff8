#!/usr/bin/env bash
# Show that `go install github.com/imdsdev/imds/cmd/imds@VERSION` works for a
# user: the module at HEAD is published, as the Go module proxy would serve
# a tag, to a file:// proxy of its own (module zip made by git archive), and
# installed from a clean GOPATH and module cache; every dependency comes from
# the configured proxy, checked against go.sum. Nothing may need a replace.
#
#   ./scripts/check-go-install.sh [VERSION]     # default v0.0.1
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local version=${1:-v0.0.1} module tmp proxy
  setup_go_env
  cd "$REPO_ROOT"
  module="$(go list -m)"
  [[ $module == github.com/imdsdev/imds ]] || die "module path is $module, not github.com/imdsdev/imds"
  if grep -qE '^\s*replace\b' go.mod; then
    die "go.mod has a replace directive: go install ...@version ignores it"
  fi
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand $tmp now
  trap "chmod -R u+w '$tmp' 2>/dev/null; rm -rf -- '$tmp'" EXIT
  proxy="$tmp/proxy/$module/@v"
  mkdir -p "$proxy"
  git archive --format=zip --prefix="$module@$version/" -o "$tmp/raw.zip" HEAD
  # A module zip holds files only; drop git archive's directory entries.
  (cd "$tmp" && mkdir x && cd x && unzip -q ../raw.zip && find . -type f | sed "s|^\./||" | sort | zip -q -X "$proxy/$version.zip" -@)
  cp go.mod "$proxy/$version.mod"
  printf '{"Version":"%s","Time":"%s"}\n' "$version" "$(git log -1 --format=%cI)" >"$proxy/$version.info"
  echo "$version" >"$proxy/list"

  section "go install $module/cmd/imds@$version from a clean GOPATH"
  env -u GOFLAGS GOPATH="$tmp/gopath" GOMODCACHE="$tmp/gopath/pkg/mod" GOBIN="$tmp/bin" \
    GOPROXY="file://$tmp/proxy,$(go env GOPROXY)" GONOSUMDB="$module" GOFLAGS=-modcacherw \
    bash -c "cd '$tmp' && go install '$module/cmd/imds@$version'"
  "$tmp/bin/imds" version
  "$tmp/bin/imds" version | grep -qx "imds $version" || die "the installed imds does not report $version"
  echo "go install works"
}

main "$@"
