#!/usr/bin/env bash
# Builds the operator's image as an OCI image archive without a container engine: the same
# image as the Dockerfile (a static binary and the CA certificates on an empty base, user
# 65532), from registry packages only (cargo, Debian's python3 and ca-certificates).
#
#   scripts/build-image.sh [--profile release|dev] [--binary PATH] [--output PATH]
#
#   --profile  the cargo profile of the static build (default release; dev is quicker)
#   --binary   package this static binary instead of building one
#   --output   the archive (default target/image/patchkeeper-oci.tar)
#
# Load or push the result with, e.g., `skopeo copy oci-archive:target/image/patchkeeper-oci.tar
# docker://registry.example.com/patchkeeper:0.1.0` or `podman load -i ...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "build-image: $*" >&2
	exit 1
}

profile=release
binary=
output=target/image/patchkeeper-oci.tar
while (($#)); do
	case $1 in
	--profile) profile=$2 && shift 2 ;;
	--binary) binary=$2 && shift 2 ;;
	--output) output=$2 && shift 2 ;;
	*) die "unknown argument $1 (see the usage at the top of $0)" ;;
	esac
done

# The musl targets cannot be installed here; glibc links statically as well.
target=x86_64-unknown-linux-gnu
if [[ -z $binary ]]; then
	RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --locked --profile "$profile" --target "$target" --bin patchkeeper
	directory=$profile
	[[ $profile == dev ]] && directory=debug
	binary=target/$target/$directory/patchkeeper
fi
[[ -x $binary ]] || die "no binary at $binary"

# ldd runs nothing for a static binary and says so; anything else names a library the
# empty base image would not have.
linkage=$(ldd "$binary" 2>&1 || true)
grep -Eq 'not a dynamic executable|statically linked' <<<"$linkage" ||
	die "$binary is dynamically linked: $linkage"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die "no version in Cargo.toml"
python3 scripts/oci-image.py --binary "$binary" --version "$version" --output "$output"
