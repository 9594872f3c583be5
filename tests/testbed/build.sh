#!/usr/bin/env bash
# Builds the local control plane's binaries from published Go modules and caches them
# outside the work tree, keyed by version, so that later runs (and fresh clones on the
# same machine) reuse them.
#
# Usage: tests/testbed/build.sh        prints the directory holding the binaries
#
# Binaries: etcd, kube-apiserver, kube-controller-manager, kubectl, helm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
go_version=$(go env GOVERSION)
cache_root=${PATCHKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchkeeper}/testbed
bin_dir="$cache_root/bin"
mkdir -p "$bin_dir"
# Two test runs starting at once must not build into the same folder.
exec 9>"$cache_root/.lock"
flock 9

log() { printf 'testbed build: %s\n' "$*" >&2; }

# A stamp per component records what the binaries in bin_dir were built from.
is_current() { [[ -f "$bin_dir/.$1.stamp" && "$(cat "$bin_dir/.$1.stamp")" == "$2" ]]; }
mark_current() { printf '%s\n' "$2" >"$bin_dir/.$1.stamp"; }

# Writes a throwaway Go module that requires one published module; prints its directory.
new_module() {
	local name=$1 dir="$cache_root/src/$1"
	rm -rf "$dir" && mkdir -p "$dir"
	printf 'module patchkeeper.local/testbed/%s\n\ngo 1.26.0\n' "$name" >"$dir/go.mod"
	printf '%s\n' "$dir"
}

build_etcd() {
	local key="etcd $ETCD_VERSION $go_version"
	is_current etcd "$key" && return
	log "building etcd $ETCD_VERSION"
	local dir
	dir=$(new_module etcd)
	(cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 &&
		go build -trimpath -ldflags '-s -w' -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3)
	mark_current etcd "$key"
}

# k8s.io/kubernetes replaces its staging modules with local paths, which Go ignores in a
# dependency. The local module replaces each of them with its published version instead;
# the list comes from the release's own go.mod.
kubernetes_go_mod() {
	local dir=$1 release_mod staging_version=v0.${KUBERNETES_VERSION#v1.}
	release_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	grep -E '^godebug ' "$release_mod" >>"$dir/go.mod" || true
	printf '\nrequire k8s.io/kubernetes %s\n\n' "$KUBERNETES_VERSION" >>"$dir/go.mod"
	sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$release_mod" | sort -u |
		while read -r staging; do
			printf 'replace %s => %s %s\n' "$staging" "$staging" "$staging_version"
		done >>"$dir/go.mod"
}

kubernetes_ldflags() {
	local minor=${KUBERNETES_VERSION#v1.}
	minor=${minor%%.*}
	local flags='-s -w' pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
		flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
		flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	printf '%s\n' "$flags"
}

build_kubernetes() {
	local key="kubernetes $KUBERNETES_VERSION $go_version"
	is_current kubernetes "$key" && return
	log "building kube-apiserver, kube-controller-manager and kubectl $KUBERNETES_VERSION"
	local dir commands=(kube-apiserver kube-controller-manager kubectl)
	dir=$(new_module kubernetes)
	kubernetes_go_mod "$dir"
	(
		cd "$dir"
		for cmd in "${commands[@]}"; do
			go get -tool "k8s.io/kubernetes/cmd/$cmd@$KUBERNETES_VERSION" >&2
		done
		go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$bin_dir/" \
			"${commands[@]/#/k8s.io/kubernetes/cmd/}"
	)
	mark_current kubernetes "$key"
}

build_helm() {
	local key="helm $HELM_VERSION $go_version" major=${HELM_VERSION%%.*}
	is_current helm "$key" && return
	log "building helm $HELM_VERSION"
	local dir
	dir=$(new_module helm)
	(cd "$dir" && go get -tool "helm.sh/helm/$major/cmd/helm@$HELM_VERSION" >&2 &&
		go build -trimpath -o "$bin_dir/helm" \
			-ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
			"helm.sh/helm/$major/cmd/helm")
	mark_current helm "$key"
}

build_etcd
build_kubernetes
build_helm
printf '%s\n' "$bin_dir"
