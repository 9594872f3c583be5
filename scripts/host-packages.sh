#!/usr/bin/env bash
# Installs the Debian packages that the build and the tests need, when any is missing.
# Quick when everything is already there.
set -euo pipefail

needed=(openssl curl python3 util-linux lua5.1 ca-certificates)
missing=()
for package in "${needed[@]}"; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$package")
done
if ((${#missing[@]})); then
	[[ $(id -u) == 0 ]] || { echo "host packages missing: ${missing[*]} (install them as root)" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v go >/dev/null || { echo "go is needed to build the control plane; install Go 1.26" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo is needed; install Rust with rustup" >&2; exit 1; }

# The patch runner's tests need a Debian guest: debootstrap, sshd, dpkg-deb and friends.
"$(dirname "${BASH_SOURCE[0]}")/../tests/guest/host-packages.sh"
