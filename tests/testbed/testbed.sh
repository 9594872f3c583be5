#!/usr/bin/env bash
# A real Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager, built from published Go modules by build.sh.
#
# Usage:
#   tests/testbed/testbed.sh up [--state-dir DIR [--remove-state]] [--watch-pid PID]
#
# `up` starts the control plane, writes kubeconfigs into the state directory, prints how to
# use them, and stays in the foreground until Ctrl-C (or until the process PID given by
# --watch-pid ends). Whatever way it ends, it stops every process it started. The state
# directory is a new temporary one unless given; `--remove-state` removes a given one on
# stop too. A control plane that failed keeps its state directory for diagnosis.
#
# The state directory then holds:
#   kubeconfig        admin (group system:masters)
#   kubeconfig-user   a user without groups, which RBAC refuses until a test grants it rights
#   env               KUBECONFIG, TESTBED_BIN and the ports, for `source`
#   ready             written once /readyz answers ok; removed again on stop
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

log() { printf 'testbed: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

state_dir=""
watch_pid=""
owns_state_dir=false
pids=()

stop_all() {
	local code=$?
	trap - EXIT INT TERM HUP
	rm -f "$state_dir/ready"
	# Stop in reverse order of start, politely first.
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=false
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=true; done
		$alive || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# A failed start keeps its state directory, logs included, for diagnosis.
	if $owns_state_dir && ((code != 1)); then rm -rf "$state_dir"; fi
	exit "$code"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a process that dies with this script, even if this script is killed with SIGKILL.
launch() {
	local name=$1
	shift
	setpriv --pdeathsig KILL -- "$@" >"$state_dir/logs/$name.log" 2>&1 &
	pids+=($!)
}

# Waits until a URL answers 200, or fails naming the component and its log.
await_healthy() {
	local name=$1 url=$2 seconds=$3
	shift 3
	for _ in $(seq $((seconds * 10))); do
		if curl -sf --max-time 2 "$@" "$url" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	tail -n 20 "$state_dir/logs/$name.log" >&2 || true
	die "$name did not become healthy at $url within ${seconds}s (log: $state_dir/logs/$name.log)"
}

cert() {
	local name=$1 subject=$2 ext=${3:-basicConstraints=CA:FALSE}
	printf '%s\n' "$ext" >"$pki/$name.ext"
	openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
		-keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
		-CAcreateserial -days 2 -out "$pki/$name.crt" -extfile "$pki/$name.ext" 2>/dev/null
}

make_pki() {
	pki="$state_dir/pki"
	mkdir -p "$pki"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=patchkeeper-testbed-ca" \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" \
		"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
	cert admin "/O=system:masters/CN=testbed-admin"
	cert controller-manager "/CN=system:kube-controller-manager"
	cert user "/CN=testbed-user"
	openssl genrsa -out "$pki/service-account.key" 2048 2>/dev/null
	openssl rsa -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" 2>/dev/null
}

write_kubeconfig() {
	local file=$1 user=$2
	cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: testbed
  context: {cluster: testbed, user: $user}
current-context: testbed
EOF
}

start_etcd() {
	etcd_port=$(free_port)
	local peer_port
	peer_port=$(free_port)
	launch etcd "$bin/etcd" --name testbed --data-dir "$state_dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" \
		--advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "testbed=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync --log-level warn
	await_healthy etcd "http://127.0.0.1:$etcd_port/health" 30
}

start_apiserver() {
	apiserver_port=$(free_port)
	launch kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
		--secure-port "$apiserver_port" --cert-dir "$state_dir/apiserver" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$pki/service-account.pub" \
		--service-account-signing-key-file "$pki/service-account.key" \
		--service-cluster-ip-range 10.96.0.0/16 \
		--allow-privileged=true --v=1
	await_healthy kube-apiserver "https://127.0.0.1:$apiserver_port/readyz" 90 \
		--cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key"
}

start_controller_manager() {
	local port
	port=$(free_port)
	write_kubeconfig "$state_dir/kubeconfig-controller-manager" controller-manager
	launch kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig "$state_dir/kubeconfig-controller-manager" \
		--bind-address 127.0.0.1 --secure-port "$port" \
		--root-ca-file "$pki/ca.crt" \
		--service-account-private-key-file "$pki/service-account.key" \
		--use-service-account-credentials=true --leader-elect=false \
		--controllers "$controllers" --v=1
	await_healthy kube-controller-manager "https://127.0.0.1:$port/healthz" 30 -k
}

# Only what the tests rely on: garbage collection, Jobs, namespace deletion, and the
# service accounts and CA bundle that Pods expect in every namespace.
controllers=garbage-collector-controller,job-controller,namespace-controller
controllers+=,serviceaccount-controller,serviceaccount-token-controller
controllers+=,root-ca-certificate-publisher-controller,ttl-after-finished-controller

up() {
	while (($#)); do
		case $1 in
		--state-dir) state_dir=$2 && shift 2 ;;
		--watch-pid) watch_pid=$2 && shift 2 ;;
		--remove-state) owns_state_dir=true && shift ;;
		*) die "unknown argument $1 (see the usage at the top of $0)" ;;
		esac
	done
	bin=$("$here/build.sh")
	if [[ -z $state_dir ]]; then
		state_dir=$(mktemp -d /tmp/patchkeeper-testbed.XXXXXX)
		owns_state_dir=true
	fi
	mkdir -p "$state_dir/logs"
	trap stop_all EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP

	local started
	started=$(date +%s%N)
	make_pki
	start_etcd
	start_apiserver
	write_kubeconfig "$state_dir/kubeconfig" admin
	write_kubeconfig "$state_dir/kubeconfig-user" user
	start_controller_manager
	cat >"$state_dir/env" <<EOF
export KUBECONFIG=$state_dir/kubeconfig
export TESTBED_BIN=$bin
export PATH=$bin:\$PATH
export TESTBED_USER_KUBECONFIG=$state_dir/kubeconfig-user
export TESTBED_APISERVER=https://127.0.0.1:$apiserver_port
EOF
	touch "$state_dir/ready"
	local elapsed_ms=$((($(date +%s%N) - started) / 1000000))
	log "ready in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s: Kubernetes $KUBERNETES_VERSION at https://127.0.0.1:$apiserver_port"
	log "try:  source $state_dir/env && kubectl get ns"
	log "logs: $state_dir/logs/   stop: Ctrl-C"

	while true; do
		if [[ -n $watch_pid ]] && ! kill -0 "$watch_pid" 2>/dev/null; then exit 0; fi
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null || die "a control-plane process ($pid) exited; see $state_dir/logs/"
		done
		sleep 0.5
	done
}

case ${1:-} in
up) shift && up "$@" ;;
*) die "usage: $0 up [--state-dir DIR [--remove-state]] [--watch-pid PID]" ;;
esac
