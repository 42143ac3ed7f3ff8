#!/usr/bin/env bash
# Show that `go install github.com/imdsdev/imds/cmd/imds@VERSION` works for a
# user: the module at HEAD is published, as the Go module proxy would serve
# a tag, to a file:// proxy of its own (module zip made by git archive), and
# installed from a clean GOPATH and module cache; every dependency comes from
# the configured proxy, checked against go.sum. Nothing may need a replace.
# Then a module of a user's own requires it at that version and runs a test
# with the imdstest package, as docs/testing-library.md says.
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

  # The test library, as a Go user gets it: a module of their own requiring
  # this one at the version, a test that imports imdstest, go test.
  section "imdstest from another module, at $version"
  local sdkconfig
  # The SDK at the version this module is tested with, not whatever is newest.
  sdkconfig="$(go list -m -f '{{.Version}}' github.com/aws/aws-sdk-go-v2/config)"
  mkdir -p "$tmp/user"
  printf 'module example.com/user\n\ngo %s\n' "$(go list -m -f '{{.GoVersion}}')" >"$tmp/user/go.mod"
  cat >"$tmp/user/user_test.go" <<'GO'
package user

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/imdsdev/imds/imdstest"
)

func TestCredentialsFromImdstest(t *testing.T) {
	srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{Name: "app", Role: "app-role", IMDSv2Required: true}))
	srv.Setenv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := cfg.Credentials.Retrieve(ctx); err != nil || c.Source != "EC2RoleProvider" {
		t.Fatalf("credentials from %q: %v", c.Source, err)
	}
}
GO
  env -u GOFLAGS GOPATH="$tmp/gopath" GOMODCACHE="$tmp/gopath/pkg/mod" \
    GOPROXY="file://$tmp/proxy,$(go env GOPROXY)" GONOSUMDB="$module" GOFLAGS=-modcacherw \
    bash -c "cd '$tmp/user' && go get '$module@$version' 'github.com/aws/aws-sdk-go-v2/config@$sdkconfig' && go mod tidy && go test -count=1 ./..."
  echo "imdstest works from another module"
}

main "$@"
