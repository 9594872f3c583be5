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
# The dnf flavour is a stand-in for a RHEL-family guest: the same Debian base with Debian's
# builds of dnf 4 and rpm, an rpm database holding test packages built here with rpmbuild,
# two local rpm repositories made with createrepo_c (one with an updateinfo of advisories;
# there pk-demo-tool 1.1 needs pk-demo-plain 1.1),
# and an os-release that names the rhel family. Real dnf and rpm run; the rest of the system
# is Debian, so dnf features that depend on the distribution (release version detection,
# needs-restarting's view of core packages) are not exercised.
#
# Usage: tests/guest/build-root.sh [apt|dnf [suite]]   prints the root's directory
#        (defaults: apt, bookworm)
#
# The cache key is the flavour, suite, RECIPE and a hash of this script: any change here
# builds anew, and older builds of the same flavour and suite are removed.
set -euo pipefail

RECIPE=2
flavour=${1:-apt}
suite=${2:-bookworm}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script_hash=$(cat "${BASH_SOURCE[0]}" "$here/dnf-updateinfo.xml" | sha256sum | cut -c1-12)
cache_root=${PATCHKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchkeeper}/guest
key="$flavour-$suite-r$RECIPE-$script_hash"
target="$cache_root/$key"

case $flavour in
apt) include=openssh-server ;;
dnf) include=openssh-server,dnf,rpm,dnf-plugins-core ;;
*)
	printf 'guest root build: unknown flavour %s (apt or dnf)\n' "$flavour" >&2
	exit 2
	;;
esac

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

# Downloaded .debs are kept, so the second flavour and later rebuilds fetch little.
mkdir -p "$cache_root/debs"
log "debootstrap $suite ($flavour) from $mirror (a few minutes on a cold cache)"
debootstrap --variant=minbase --include="$include" --cache-dir="$cache_root/debs" \
	"$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

build_apt_flavour() {
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
	cat >"$root/etc/apt/sources.list.d/pk-repo.list" <<-'SOURCES'
	deb [trusted=yes] file:/srv/pk-repo pk-stable main
	deb [trusted=yes] file:/srv/pk-repo pk-stable-security main
	SOURCES

	# Install the 1.0 versions.
	in_root apt-get -qq update
	in_root apt-get -qq install -y --no-install-recommends \
		pk-demo-lib=1.0 pk-demo-tool=1.0 pk-demo-held=1.0 pk-demo-kernel=1.0 \
		pk-demo-broken=1.0 pk-demo-greedy=1.0 >/dev/null
	in_root apt-mark hold pk-demo-held >/dev/null
	in_root apt-get clean
}

# make_rpm NAME VERSION OUTDIR [REQUIRES]
make_rpm() {
	local name=$1 version=$2 out=$3 requires=${4:-} top="$work/rpmbuild"
	mkdir -p "$top/SPECS" "$out"
	cat >"$top/SPECS/$name-$version.spec" <<-SPEC
		Name: $name
		Version: $version
		Release: 1
		${requires:+Requires: $requires}
		Summary: patchkeeper test package $name
		License: Apache-2.0
		BuildArch: noarch
		%description
		patchkeeper test package $name
		%install
		mkdir -p %{buildroot}/usr/share/doc/$name
		echo "$name $version" > %{buildroot}/usr/share/doc/$name/pk-version
		%files
		/usr/share/doc/$name/pk-version
	SPEC
	rpmbuild -bb --quiet --define "_topdir $top" "$top/SPECS/$name-$version.spec" >/dev/null
	mv "$top/RPMS/noarch/$name-$version-1.noarch.rpm" "$out/"
}

build_dnf_flavour() {
	local repo="$root/srv/pk-rpm"
	for name in pk-demo-lib pk-demo-tool pk-demo-plain; do
		make_rpm "$name" 1.0 "$repo/base"
	done
	make_rpm pk-demo-lib 1.1 "$repo/updates"
	make_rpm pk-demo-tool 1.1 "$repo/updates" "pk-demo-plain >= 1.1"
	make_rpm pk-demo-plain 1.1 "$repo/updates"
	createrepo_c -q "$repo/base"
	createrepo_c -q "$repo/updates"
	modifyrepo_c --mdtype=updateinfo "$here/dnf-updateinfo.xml" "$repo/updates/repodata" >/dev/null

	mkdir -p "$root/etc/yum.repos.d"
	cat >"$root/etc/yum.repos.d/pk.repo" <<-'REPOS'
		[pk-base]
		name=patchkeeper tests base
		baseurl=file:///srv/pk-rpm/base
		gpgcheck=0

		[pk-updates]
		name=patchkeeper tests updates
		baseurl=file:///srv/pk-rpm/updates
		gpgcheck=0
	REPOS
	# Debian's dnf enables its "local" plugin, which would want a signing key.
	printf '[main]\nenabled=0\n' >"$root/etc/dnf/plugins/local.conf"
	# The stand-in says it is of the rhel family, which is how the runner picks dnf.
	rm -f "$root/etc/os-release"
	cat >"$root/etc/os-release" <<-'OS'
		NAME="patchkeeper RHEL stand-in"
		ID=pk-rhel-standin
		ID_LIKE="rhel fedora"
		VERSION_ID="9.4"
		PRETTY_NAME="patchkeeper RHEL stand-in 9.4 (Debian with dnf)"
	OS
	# Debian's rpm warns against installing directly; this is a test root, so it may.
	in_root rpm -i --nodeps /srv/pk-rpm/base/pk-demo-lib-1.0-1.noarch.rpm \
		/srv/pk-rpm/base/pk-demo-tool-1.0-1.noarch.rpm /srv/pk-rpm/base/pk-demo-plain-1.0-1.noarch.rpm 2>/dev/null
}

"build_${flavour}_flavour"

# The image's own host keys are never used: each test run generates its own.
rm -f "$root"/etc/ssh/ssh_host_*

touch "$work/.complete"
rm -rf "$target"
mv "$work" "$target"
trap - EXIT
rm -rf "$target/pkg" "$target/rpmbuild"
for old in "$cache_root/$flavour-$suite-r"*; do
	[[ $old == "$target" ]] || rm -rf "$old"
done
log "ready: $target/root"
printf '%s\n' "$target/root"
