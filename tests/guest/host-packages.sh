#!/usr/bin/env bash
# Installs the host tools that the patch runner's guest tests need, when missing:
# debootstrap builds the Debian roots, sshd serves them, dpkg-deb and apt-ftparchive build the
# local apt test repository, rpmbuild and createrepo_c the rpm one, ssh-keygen makes the
# per-run keys.
#
# Idempotent: when every tool is present it returns at once without touching apt.
# Usage: tests/guest/host-packages.sh           install what is missing (as root)
#        tests/guest/host-packages.sh --check   only report what is missing (exit 1 if any)
set -euo pipefail

# tool on PATH (or absolute path) => Debian package that ships it
declare -A wanted=(
	[debootstrap]=debootstrap
	[/usr/sbin/sshd]=openssh-server
	[ssh-keygen]=openssh-client
	[dpkg-deb]=dpkg
	[dpkg-scanpackages]=dpkg-dev
	[apt-ftparchive]=apt-utils
	[fakeroot]=fakeroot
	[unshare]=util-linux
	[rpmbuild]=rpm
	[createrepo_c]=createrepo-c
)

missing=()
for tool in "${!wanted[@]}"; do
	if [[ $tool == /* ]]; then
		[[ -x $tool ]] || missing+=("${wanted[$tool]}")
	else
		command -v "$tool" >/dev/null 2>&1 || missing+=("${wanted[$tool]}")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ ${1:-} == --check ]]; then
	printf 'guest host packages missing: %s; install them with tests/guest/host-packages.sh (as root)\n' \
		"${missing[*]}" >&2
	exit 1
fi

if ((EUID != 0)); then
	printf 'guest host packages: missing %s; run this script as root\n' "${missing[*]}" >&2
	exit 1
fi

printf 'guest host packages: installing %s\n' "${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The host's own sshd is not wanted running: the tests start their own on loopback.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled ssh >/dev/null 2>&1; then
	systemctl disable --now ssh >/dev/null 2>&1 || true
fi
