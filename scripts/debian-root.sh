#!/usr/bin/env bash
# Print the path of a tarball holding a fresh Debian 12 (bookworm) root with
# systemd, built by debootstrap from Debian's mirror and cached, since it takes
# minutes: the package tests install imds's .deb into a copy of it.
#
#   sudo ./scripts/debian-root.sh            # builds once, then prints the cached path
#   IMDS_CI_CACHE=/some/dir ./scripts/debian-root.sh
#
# The cache key is the package list below: change it and a new root is built.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# systemd boots the root in a container; the rest is what the test uses to
# look at the result (curl, nft, ip, ps).
INCLUDE=systemd,systemd-sysv,dbus,curl,ca-certificates,iproute2,nftables,procps
CACHE=${IMDS_CI_CACHE:-/var/cache/imds-ci}

main() {
  [[ $EUID -eq 0 ]] || die "debootstrap needs root"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not installed (scripts/deps.sh installs it)"
  local key out tmp
  key="$(printf '%s\n' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-12)"
  out="$CACHE/debian12-root-$key.tar"
  if [[ -s $out ]]; then
    echo "$out"
    return
  fi
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/root.XXXXXX")"
  # shellcheck disable=SC2064 # expand $tmp now
  trap "rm -rf -- '$tmp'" EXIT
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  # An empty machine-id: systemd makes one at first boot, as on a new machine.
  : >"$tmp/root/etc/machine-id"
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
  tar -C "$tmp/root" --numeric-owner -cf "$tmp/root.tar" .
  mv "$tmp/root.tar" "$out"
  echo "$out"
}

main "$@"
