#!/usr/bin/env bash
# Builds the Debian root that the patch runner's tests serve over SSH, and caches it outside
# the work tree so that later runs (and fresh clones on the same machine) reuse it.
#
# The root holds: a minimal Debian made by debootstrap, openssh-server, and a local apt
# repository of tiny test packages in two suites (pk-stable and pk-stable-security), with the
# 1.0 versions installed and pk-demo-held on hold. The 1.1 versions are the updates:
#   pk-demo-lib     security                  pk-demo-tool    regular, needs pk-demo-newdep
#   pk-demo-kernel  security, asks for reboot pk-demo-held    regular, but the package is held
#   pk-demo-broken  regular, postinst fails   pk-demo-greedy  regular, conflicts with pk-demo-tool Its apt sources name only that local
# repository, so scans and installs in tests never reach the network.
#
# Usage: tests/guest/build-root.sh [suite]   prints the root's directory (default: bookworm)
#
# The cache key is the suite, RECIPE and a hash of this script: any change here builds anew.
set -euo pipefail

RECIPE=1
suite=${1:-bookworm}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
cache_root=${PATCHKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchkeeper}/guest
key="$suite-r$RECIPE-$script_hash"
target="$cache_root/$key"

log() { printf 'guest root build: %s\n' "$*" >&2; }

mkdir -p "$cache_root"
# Two test binaries starting at once must not build the same root twice.
exec 9>"$cache_root/.lock"
flock 9

if [[ -f "$target/.complete" ]]; then
	printf '%s\n' "$target/root"
	exit 0
fi

"$here/host-packages.sh" --check

# The host's apt sources name the Debian mirror this machine may use.
mirror=$(grep -rhoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
	head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

log "debootstrap $suite from $mirror (a few minutes on a cold cache)"
debootstrap --variant=minbase --include=openssh-server "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}

# --- the local test repository -------------------------------------------------------------

# make_deb NAME VERSION POOL [EXTRA-CONTROL-LINE] [POSTINST-BODY]
make_deb() {
	local name=$1 version=$2 pool=$3 extra=${4:-} postinst=${5:-}
	local dir="$work/pkg/$name-$version"
	mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/$name"
	printf '%s %s\n' "$name" "$version" >"$dir/usr/share/doc/$name/pk-version"
	{
		printf 'Package: %s\nVersion: %s\nArchitecture: all\n' "$name" "$version"
		printf 'Maintainer: patchkeeper tests <tests@patchkeeper.invalid>\n'
		printf 'Section: misc\nPriority: optional\n'
		[[ -n $extra ]] && printf '%s\n' "$extra"
		printf 'Description: patchkeeper test package %s\n' "$name"
	} >"$dir/DEBIAN/control"
	if [[ -n $postinst ]]; then
		printf '#!/bin/sh\nset -e\n%s\n' "$postinst" >"$dir/DEBIAN/postinst"
		chmod 0755 "$dir/DEBIAN/postinst"
	fi
	mkdir -p "$root/srv/pk-repo/pool/$pool"
	fakeroot dpkg-deb --build -Zgzip "$dir" "$root/srv/pk-repo/pool/$pool/${name}_${version}_all.deb" >/dev/null
}

reboot_note='touch /var/run/reboot-required
echo pk-demo-kernel >>/var/run/reboot-required.pkgs'

for name in pk-demo-lib pk-demo-tool pk-demo-held pk-demo-kernel pk-demo-broken pk-demo-greedy; do
	make_deb "$name" 1.0 pk-stable
done
make_deb pk-demo-lib 1.1 pk-stable-security
make_deb pk-demo-kernel 1.1 pk-stable-security "" "$reboot_note"
# The new tool needs a package that is not installed yet: an upgrade that pulls in a dependency.
make_deb pk-demo-newdep 1.0 pk-stable
make_deb pk-demo-tool 1.1 pk-stable "Depends: pk-demo-newdep"
make_deb pk-demo-held 1.1 pk-stable
make_deb pk-demo-broken 1.1 pk-stable "" 'echo "pk-demo-broken: configuration refused on purpose" >&2; exit 1'
make_deb pk-demo-greedy 1.1 pk-stable "Conflicts: pk-demo-tool"

# publish SUITE LABEL
publish() {
	local suite_name=$1 label=$2 dists="$root/srv/pk-repo/dists/$1"
	mkdir -p "$dists/main/binary-amd64"
	(cd "$root/srv/pk-repo" && apt-ftparchive packages "pool/$suite_name") >"$dists/main/binary-amd64/Packages"
	gzip -9kn "$dists/main/binary-amd64/Packages"
	apt-ftparchive \
		-o "APT::FTPArchive::Release::Origin=patchkeeper-tests" \
		-o "APT::FTPArchive::Release::Label=$label" \
		-o "APT::FTPArchive::Release::Suite=$suite_name" \
		-o "APT::FTPArchive::Release::Codename=$suite_name" \
		-o "APT::FTPArchive::Release::Architectures=amd64 all" \
		-o "APT::FTPArchive::Release::Components=main" \
		release "$dists" >"$work/Release"
	mv "$work/Release" "$dists/Release"
}
publish pk-stable "patchkeeper tests"
publish pk-stable-security "patchkeeper tests Security"

# Only the local repository: tests never reach the network from the guest.
rm -f "$root/etc/apt/sources.list"
rm -rf "$root/etc/apt/sources.list.d" && mkdir -p "$root/etc/apt/sources.list.d"
cat >"$root/etc/apt/sources.list.d/pk-repo.list" <<'SOURCES'
deb [trusted=yes] file:/srv/pk-repo pk-stable main
deb [trusted=yes] file:/srv/pk-repo pk-stable-security main
SOURCES

# --- install the 1.0 versions -------------------------------------------------------------

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get -qq update
in_root apt-get -qq install -y --no-install-recommends \
	pk-demo-lib=1.0 pk-demo-tool=1.0 pk-demo-held=1.0 pk-demo-kernel=1.0 \
	pk-demo-broken=1.0 pk-demo-greedy=1.0 >/dev/null
in_root apt-mark hold pk-demo-held >/dev/null
in_root apt-get clean
# The image's own host keys are never used: each test run generates its own.
rm -f "$root"/etc/ssh/ssh_host_*

touch "$work/.complete"
rm -rf "$target"
mv "$work" "$target"
trap - EXIT
rm -rf "$target/pkg"
log "ready: $target/root"
printf '%s\n' "$target/root"
