#!/usr/bin/env bash
# Install everything the checks in scripts/test-all.sh need, on Debian 12:
# apt packages, pinned Go tools and the Go module dependencies.
# Idempotent: apt is not touched when every package is already installed.
#
#   sudo ./scripts/deps.sh
set -euo pipefail

# Debian packages the tests use. cloud-init is installed for its Python
# modules only; it is disabled before installation so it never acts on the
# machine (see install_apt_packages).
# debootstrap: the fresh Debian 12 root the package tests install the .deb into;
# zip and unzip: the module zip of scripts/check-go-install.sh;
# etcd-server: the etcd binary the store tests run on loopback (internal/etcdtest), never its service.
APT_PACKAGES=(python3-botocore cloud-init wrk openssl ca-certificates iproute2 nftables curl dnsmasq-base busybox libvirt-clients make git gcc debootstrap zip unzip chromium etcd-server)

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

pkg_installed() {
  local status
  # shellcheck disable=SC2016 # ${Status} is a dpkg-query field, not a shell variable
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
  [[ $status == "install ok installed" ]]
}

install_apt_packages() {
  section "apt packages"
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "dpkg-query/apt-get not found: this script supports Debian (12) only"
  fi

  local pkg missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    echo "all installed: ${APT_PACKAGES[*]}"
    return
  fi
  echo "missing: ${missing[*]}"

  for pkg in "${missing[@]}"; do
    if [[ $pkg == cloud-init ]]; then
      # Only when we are the ones installing it: never disable a cloud-init
      # that was already managing this machine.
      mkdir -p /etc/cloud
      touch /etc/cloud/cloud-init.disabled
      echo "created /etc/cloud/cloud-init.disabled (cloud-init will never run at boot)"
    fi
  done

  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q -o Acquire::Retries=3
  apt-get install -q -y --no-install-recommends -o Acquire::Retries=3 "${missing[@]}"
}

install_go_tools() {
  section "Go tools"
  if staticcheck_ok; then
    echo "staticcheck $STATICCHECK_VERSION already installed in $GOBIN_DIR"
  else
    # Outside the module, so its go.mod plays no part.
    (cd / && go install "honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION")
    staticcheck_ok || die "staticcheck $STATICCHECK_VERSION not found in $GOBIN_DIR after go install"
    echo "installed $("$GOBIN_DIR/staticcheck" -version)"
  fi
}

# install_promtool puts Debian's promtool (from the prometheus package) in
# /usr/local/bin for the metrics tests' `promtool check metrics`, without
# installing the package: that would start a Prometheus server.
install_promtool() {
  section "promtool"
  if command -v promtool >/dev/null 2>&1; then
    echo "promtool already installed: $(command -v promtool)"
    return
  fi
  local dir=/var/cache/imds-ci/promtool tmp
  if [[ ! -x $dir/usr/bin/promtool ]]; then
    tmp="$(mktemp -d)"
    chmod 755 "$tmp" # apt-get download drops to the _apt user
    if ! (cd "$tmp" && apt-get download -q -o Acquire::Retries=3 prometheus); then
      apt-get update -q -o Acquire::Retries=3
      (cd "$tmp" && apt-get download -q -o Acquire::Retries=3 prometheus) || die "apt-get download prometheus failed"
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
    rm -rf "$tmp"
  fi
  ln -sf "$dir/usr/bin/promtool" /usr/local/bin/promtool
  echo "installed $(/usr/local/bin/promtool --version 2>&1 | head -1)"
}

download_modules() {
  section "Go modules"
  (cd "$REPO_ROOT" && go mod download)
  echo "module cache: $(go env GOMODCACHE)"
}

main() {
  ensure_root "$@"
  setup_go_env
  set_goflags
  echo "$(go version); GOFLAGS=$GOFLAGS"
  install_apt_packages
  install_promtool
  install_go_tools
  download_modules
}

main "$@"
