#!/usr/bin/env bash
# Import the cached Debian 12 root (scripts/debian-root.sh) as a local Docker
# image, for machines without a registry: the first stage of Dockerfile takes
# its CA certificates from it, and the package tests boot systemd in it.
#
#   sudo ./scripts/base-image.sh imds-build-base:bookworm
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local name=${1:?usage: base-image.sh NAME[:TAG]} tar
  command -v docker >/dev/null 2>&1 || die "docker not installed"
  tar="$("$SCRIPTS_DIR/debian-root.sh")"
  docker import --change 'CMD ["/bin/bash"]' "$tar" "$name" >/dev/null
  echo "$name"
}

main "$@"
