#!/usr/bin/env bash
# The one-command demo: a fleet of KubeVirt VMs in two namespaces, patched by patchkeeper in
# two maintenance windows that open now, on a local control plane with the test doubles
# playing KubeVirt and the kubelet.
#
# Usage: scripts/demo.sh [--keep] [--short]
#   --keep    leave the control plane, the operator and the doubles running at the end and
#             print how to explore them with kubectl and how to stop them
#   --short   a fleet of 10 VMs and a faster clock (what tests/demo.rs runs)
#
# It builds what is missing (host packages, the control-plane binaries, patchkeeper and the
# doubles), starts everything with its logs in files, shows the windows' progress, then
# prints what kubectl shows about the result. Whatever way it ends, it stops every process
# it started, unless --keep. A failed demo keeps its logs for diagnosis.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

keep=false
short=false
state=""
started_at=$(date +%s)
# Processes this script started, by name, in the order they were started.
declare -A pids=()
started=()

usage() { sed -n '/^# Usage/,/^#$/s/^# \{0,1\}//p' "$0" >&2; }

parse_args() {
	while (($#)); do
		case $1 in
		--keep) keep=true ;;
		--short) short=true ;;
		-h | --help) usage && exit 0 ;;
		*) usage && die "unknown argument: $1" ;;
		esac
		shift
	done
}

# --- Output -----------------------------------------------------------------------------

if [[ -t 1 ]]; then
	bold=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' reset=$'\e[0m'
else
	bold="" dim="" red="" reset=""
fi

step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
note() { printf '    %s\n' "$*"; }
heading() { printf '\n%s--- %s%s\n' "$bold" "$*" "$reset"; }
comment() { printf '%s# %s%s\n' "$dim" "$*" "$reset"; }
die() {
	printf '\n%sdemo: %s%s\n' "$red" "$*" "$reset" >&2
	exit 1
}

# Shows a command as a reader would type it, then runs it.
show() {
	printf '%s$ %s%s\n' "$dim" "$*" "$reset"
	"$@"
}

# --- Settings of the two modes ----------------------------------------------------------

configure() {
	if $short; then
		clock_rate=20     # the canary's 10-minute soak takes 30 s
		expected_seconds=180
		timeout_seconds=300
	else
		clock_rate=10     # the canary's 10-minute soak takes a minute
		expected_seconds=300
		timeout_seconds=900
	fi
	# The operator's clock starts this many real seconds before the windows open, time
	# enough to inventory the fleet and judge every VM first.
	lead_seconds=6
}

# --- Building ---------------------------------------------------------------------------

build() {
	step "Building (the first run builds a Kubernetes control plane from source: ~15 min)"
	if ! command -v openssl curl python3 setpriv >/dev/null; then
		note "host packages"
		scripts/host-packages.sh >>"$state/logs/build.log" 2>&1 ||
			fail_with_log "installing host packages failed" "$state/logs/build.log"
	fi
	note "control plane: etcd, kube-apiserver, kube-controller-manager, kubectl"
	tests/testbed/build.sh >/dev/null 2>>"$state/logs/build.log" ||
		fail_with_log "building the control plane failed" "$state/logs/build.log"
	note "patchkeeper and the test doubles (cargo build)"
	cargo build --locked --bin patchkeeper --example doubles >>"$state/logs/build.log" 2>&1 ||
		fail_with_log "cargo build failed" "$state/logs/build.log"
	local target
	target=$(cargo metadata --format-version 1 --no-deps |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
	patchkeeper=$target/debug/patchkeeper
	doubles=$target/debug/examples/doubles
	note "done; log: $state/logs/build.log"
}

fail_with_log() {
	tail -n 15 "$2" >&2
	die "$1 (log: $2)"
}

# --- Processes --------------------------------------------------------------------------

# Starts a process in the background with its output in a log file and remembers its pid.
# Without --keep it dies with this script even if this script is killed outright; with
# --keep it gets a session of its own, so that closing the terminal does not stop it.
launch() {
	local name=$1
	shift
	export NO_COLOR=1
	if $keep; then
		setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
	else
		setpriv --pdeathsig TERM -- "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
	fi
	pids[$name]=$!
	started+=("$name")
}

# Stops the processes in the reverse order of their start, politely first.
stop_all() {
	local i name
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		name=${started[i]}
		kill -TERM "${pids[$name]}" 2>/dev/null || true
		await_exit "${pids[$name]}" 100 || kill -KILL "${pids[$name]}" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}

# Waits up to `tenths` tenths of a second for a process to end.
await_exit() {
	local pid=$1 tenths=$2
	for ((; tenths > 0; tenths--)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	! kill -0 "$pid" 2>/dev/null
}

on_exit() {
	local code=$?
	trap - EXIT INT TERM HUP
	if [[ -t 1 ]]; then printf '%s' "$reset"; fi
	if $keep && ((code == 0)); then
		return
	fi
	if ((${#started[@]})); then
		printf '\nStopping the operator, the doubles and the control plane...\n'
		stop_all
	fi
	if ((code != 1)); then
		rm -rf "$state"
		printf 'Everything the demo started is stopped and its state removed.\n'
	elif [[ -n $state ]]; then
		printf 'Everything the demo started is stopped; logs kept in %s/logs\n' "$state" >&2
	fi
}

# --- The control plane ------------------------------------------------------------------

start_control_plane() {
	step "Starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
	local watch=(--watch-pid $$)
	$keep && watch=()
	launch control-plane tests/testbed/testbed.sh up --state-dir "$state/testbed" "${watch[@]}"
	local tenths
	for ((tenths = 1200; tenths > 0; tenths--)); do
		[[ -f $state/testbed/ready ]] && break
		kill -0 "${pids[control-plane]}" 2>/dev/null ||
			fail_with_log "the control plane did not start" "$state/logs/control-plane.log"
		sleep 0.1
	done
	[[ -f $state/testbed/ready ]] ||
		fail_with_log "the control plane was not ready in 2 minutes" "$state/logs/control-plane.log"
	# shellcheck source=/dev/null
	source "$state/testbed/env"
	note "pid ${pids[control-plane]}, API server $TESTBED_APISERVER"
	note "logs: $state/logs/control-plane.log and $state/testbed/logs/"
}

apply() { kubectl apply --server-side --field-manager patchkeeper-demo "$@" >/dev/null; }

# --- The API, the samples and the fleet -------------------------------------------------

install_crds() {
	step "Installing the CRDs: patchkeeper's and KubeVirt's (a minimal fixture)"
	apply -f crds/patchkeeper.io.yaml -f tests/fixtures/kubevirt-crds.yaml
	kubectl wait --for=condition=Established --timeout=60s \
		-f crds/patchkeeper.io.yaml -f tests/fixtures/kubevirt-crds.yaml >/dev/null
}

# Picks when the windows open and where the operator's clock starts. The windows open at a
# quarter hour far enough back that the clock, running faster than real time, is still
# behind it when the demo ends: kubectl shows ages against the real time, and a time in
# the future would read "<invalid>".
plan_clock() {
	local now behind
	now=$(date +%s)
	behind=$(((clock_rate - 1) * expected_seconds))
	opens_at=$(((now - behind) / 900 * 900))
	clock_start_epoch=$((opens_at - lead_seconds * clock_rate))
	clock_start=$(date -u -d "@$clock_start_epoch" +%Y-%m-%dT%H:%M:%SZ)
	schedule="$(date -u -d "@$opens_at" '+%-M %-H') * * *"
}

# Turns a sample into the demo's version of it, without the API server: each further
# argument is a JSON pointer and the value it gets, or `-` to remove that field.
adapted() {
	local file=$1 ops=()
	shift
	while (($#)); do
		if [[ $2 == - ]]; then
			ops+=("{\"op\": \"remove\", \"path\": \"$1\"}")
		else
			ops+=("{\"op\": \"replace\", \"path\": \"$1\", \"value\": \"$2\"}")
		fi
		shift 2
	done
	local IFS=,
	kubectl patch --local -f "$file" --type json -p "[${ops[*]}]" -o yaml
}

install_samples() {
	step "Installing the samples, adapted to open now"
	local ns
	for ns in shop-prod shop-dev; do
		kubectl create namespace "$ns" >/dev/null
		ssh_secret "$ns"
	done
	install_production
	install_dev
	note "both windows open daily at $(date -u -d "@$opens_at" +%H:%M) UTC (schedule \"$schedule\", UTC)"
}

install_production() {
	kubectl create serviceaccount patchkeeper-runner -n shop-prod >/dev/null
	apply -n shop-prod -f <(adapted samples/baseline-production-security.yaml \
		/spec/approval/approveAfter -)
	apply -n shop-prod -f <(adapted samples/window-production-patch-tuesday.yaml \
		/spec/schedule "$schedule" /spec/timeZone UTC /spec/rollout/maxConcurrent 25% \
		/spec/rollout/waves/0/soak 10m /spec/rollout/waves/1/soak 5m)
	apply -n shop-prod -f <(adapted samples/exception-legacy-erp.yaml \
		/spec/expires "$(days_from_now 59)")
	apply -n shop-prod -f - <<<"$(change_freeze)"
	note "shop-prod: baseline production-security, window production-patch-tuesday,"
	note "           exceptions legacy-erp-migration and payments-change-freeze"
	note "           adapted: updates approved at once (not after 7 days), 25% of the VMs"
	note "           patched at once (not 10%), waves soaking 10m and 5m (not 2h and 30m)"
}

install_dev() {
	apply -n shop-dev -f samples/baseline-dev-permissive.yaml
	apply -n shop-dev -f <(adapted samples/window-dev-nightly.yaml \
		/spec/schedule "$schedule" /spec/timeZone UTC)
	note "shop-dev:  baseline dev-permissive, window dev-nightly"
}

days_from_now() { date -u -d "+$1 days" +%Y-%m-%dT00:00:00Z; }

# The doubles never connect anywhere, but the samples' windows name this Secret.
ssh_secret() {
	kubectl create secret generic patchkeeper-ssh -n "$1" \
		--from-literal=ssh-privatekey="not a key: the demo's doubles never connect" \
		--from-literal=known_hosts= >/dev/null
}

# An exception that exempts a VM from patching altogether, for a while.
change_freeze() {
	cat <<EOF
apiVersion: patchkeeper.io/v1alpha1
kind: PatchException
metadata:
  name: payments-change-freeze
spec:
  owner: payments-team@example.com
  reason: Change freeze on the payment service during the PCI DSS audit; patched right after.
  expires: "$(days_from_now 10)"
  vmNames: [payments-1]
EOF
}

# The fleet, one VM per line. `short` marks the VMs of --short; power is the run strategy
# (Halted: dormant, woken by the window); guest scripts the doubles (boot and patch seconds,
# `fail=always`, `reboot` for a guest that asks for a reboot).
fleet() {
	cat <<'EOF'
# in   namespace name          power  wave   owner         os          guest
short  shop-prod web-1         Always canary team-web      bookworm    patch=3
-      shop-prod api-1         Always canary team-api      jammy       patch=4
-      shop-prod web-2         Always -      team-web      bookworm    patch=4
-      shop-prod web-3         Always -      team-web      bookworm    patch=3 reboot
-      shop-prod web-4         Always -      team-web      bookworm    patch=5
short  shop-prod api-2         Always -      team-api      jammy       patch=3
-      shop-prod api-3         Always -      team-api      jammy       patch=4 reboot
-      shop-prod checkout-1    Always -      team-checkout el9         patch=5
-      shop-prod checkout-2    Always -      team-checkout el9         patch=4
short  shop-prod search-1      Always -      team-search   jammy       patch=2 fail=always
short  shop-prod payments-1    Always -      team-payments el9         patch=3
short  shop-prod legacy-erp    Always -      team-erp      buster-erp  patch=4
short  shop-prod wiki-old      Always -      team-docs     stretch     patch=3
short  shop-prod tmp-loadtest  Always -      -             bookworm    patch=3
short  shop-prod batch-1       Halted -      team-data     bookworm    boot=6 patch=4
-      shop-prod batch-2       Halted -      team-data     bookworm    boot=8 patch=3
-      shop-prod reporting-1   Halted -      team-finance  el9         boot=10 patch=5
-      shop-prod dr-standby-1  Halted -      team-web      jammy       boot=7 patch=3
short  shop-dev  dev-web-1     Always -      team-web      bookworm    patch=2
-      shop-dev  dev-web-2     Always -      team-web      bookworm    patch=2
-      shop-dev  dev-api-1     Always -      team-api      jammy       patch=3
-      shop-dev  dev-api-2     Always -      team-api      noble       patch=2
-      shop-dev  ci-runner-1   Always -      team-platform bookworm    patch=3 reboot
-      shop-dev  ci-runner-2   Always -      team-platform bookworm    patch=3
-      shop-dev  grafana-dev   Always -      team-platform noble       patch=2
-      shop-dev  sandbox-old   Always -      team-platform buster      patch=2
short  shop-dev  preview-1     Halted -      team-web      bookworm    boot=5 patch=2
-      shop-dev  preview-2     Halted -      team-web      bookworm    boot=5 patch=2
-      shop-dev  preview-3     Halted -      team-api      jammy       boot=6 patch=3
-      shop-dev  preview-4     Halted -      team-checkout el9         boot=8 patch=3
-      shop-dev  ci-runner-3   Halted -      team-platform bookworm    boot=4 patch=2
EOF
}

# What the guest agent reports for each OS, and the updates a scan finds there.
os_release() {
	case $1 in
	bookworm) echo "debian 12 Debian GNU/Linux 12 (bookworm)" ;;
	buster | buster-erp) echo "debian 10 Debian GNU/Linux 10 (buster)" ;;
	stretch) echo "debian 9 Debian GNU/Linux 9 (stretch)" ;;
	jammy) echo "ubuntu 22.04 Ubuntu 22.04.5 LTS" ;;
	noble) echo "ubuntu 24.04 Ubuntu 24.04.1 LTS" ;;
	el9) echo "rhel 9.4 Red Hat Enterprise Linux 9.4 (Plow)" ;;
	esac
}

available_updates() {
	local list
	case $1 in
	bookworm)
		list="openssl=3.0.15-1~deb12u1:Security:Critical libssl3=3.0.15-1~deb12u1:Security:Critical"
		list+=" libc6=2.36-9+deb12u9:Security:Important curl=7.88.1-10+deb12u8:Security:Moderate"
		list+=" libcurl4=7.88.1-10+deb12u8:Security:Moderate tzdata=2024b-0+deb12u1:Bugfix"
		list+=" linux-image-amd64=6.1.119-1:Security:Important" ;;
	buster | buster-erp)
		list="openssl=1.1.1n-0+deb10u6:Security:Critical libc6=2.28-10+deb10u4:Security:Important"
		list+=" curl=7.64.0-4+deb10u9:Security:Moderate" ;;&
	buster-erp)
		list+=" postgresql-11=11.22-0+deb10u2:Security:Important libpq5=11.22-0+deb10u2:Security:Important" ;;
	stretch)
		list="openssl=1.1.0l-1~deb9u6:Security:Critical libc6=2.24-11+deb9u4:Security:Important" ;;
	jammy)
		list="openssl=3.0.2-0ubuntu1.18:Security:Critical libc6=2.35-0ubuntu3.8:Security:Important"
		list+=" sudo=1.9.9-1ubuntu2.4:Security:Important curl=7.81.0-1ubuntu1.18:Security:Moderate" ;;
	noble)
		list="openssl=3.0.13-0ubuntu3.4:Security:Critical libc6=2.39-0ubuntu8.3:Security:Important"
		list+=" curl=8.5.0-2ubuntu10.5:Security:Moderate" ;;
	el9)
		list="openssl=3.0.7-28.el9_4:Security:Critical glibc=2.34-100.el9_4.4:Security:Important"
		list+=" kernel=5.14.0-427.42.1.el9_4:Security:Important curl=7.76.1-29.el9_4.1:Security:Moderate"
		list+=" tzdata=2024b-2.el9:Bugfix" ;;
	esac
	echo "${list// /,}"
}

image() {
	case $1 in
	bookworm) echo quay.io/containerdisks/debian:12 ;;
	buster*) echo quay.io/containerdisks/debian:10 ;;
	stretch) echo quay.io/containerdisks/debian:9 ;;
	jammy) echo quay.io/containerdisks/ubuntu:22.04 ;;
	noble) echo quay.io/containerdisks/ubuntu:24.04 ;;
	el9) echo registry.example.com/images/rhel:9.4 ;;
	esac
}

# The doubles' annotations for the guest column's words.
guest_annotations() {
	local word
	for word in "$@"; do
		case $word in
		boot=*) echo "    double.patchkeeper.io/boot-seconds: \"${word#boot=}\"" ;;
		patch=*) echo "    double.patchkeeper.io/patch-seconds: \"${word#patch=}\"" ;;
		fail=*) echo "    double.patchkeeper.io/fail: ${word#fail=}" ;;
		reboot) echo '    double.patchkeeper.io/reboot-required: "true"' ;;
		*) die "fleet: unknown guest word $word" ;;
		esac
	done
}

vm_manifest() {
	local namespace=$1 name=$2 power=$3 wave=$4 owner=$5 os=$6
	shift 6
	local env=production
	[[ $namespace == shop-dev ]] && env=dev
	cat <<EOF
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: $name
  namespace: $namespace
  labels:
    env: $env
    app: ${name%-[0-9]*}
$([[ $owner != - ]] && echo "    owner: $owner")
$([[ $wave != - ]] && echo "    patchkeeper.io/wave: $wave")
  annotations:
    double.patchkeeper.io/os: "$(os_release "$os")"
    double.patchkeeper.io/updates: "$(available_updates "$os")"
$(guest_annotations "$@")
spec:
  runStrategy: $power
  template:
    metadata:
      labels: {kubevirt.io/domain: $name}
    spec:
      domain:
        cpu: {cores: 2}
        devices:
          disks: [{name: root, disk: {bus: virtio}}]
        resources:
          requests: {memory: 4Gi}
      volumes:
        - name: root
          containerDisk: {image: $(image "$os")}
EOF
}

fleet_manifests() {
	local in namespace name power wave owner os guest
	while read -r in namespace name power wave owner os guest; do
		[[ $in == "#" ]] && continue
		$short && [[ $in != short ]] && continue
		# shellcheck disable=SC2086 # the guest column is a list of words
		vm_manifest "$namespace" "$name" "$power" "$wave" "$owner" "$os" $guest
	done < <(fleet) | sed '/^$/d'
}

create_fleet() {
	step "Creating the fleet: VirtualMachines in shop-prod and shop-dev"
	fleet_manifests >"$state/fleet.yaml"
	apply -f "$state/fleet.yaml"
	local running dormant
	running=$(grep -c '^  runStrategy: Always' "$state/fleet.yaml")
	dormant=$(grep -c '^  runStrategy: Halted' "$state/fleet.yaml")
	note "$((running + dormant)) VMs: $running running, $dormant dormant (runStrategy: Halted)"
	note "manifests: $state/fleet.yaml"
}

# --- The doubles and the operator -------------------------------------------------------

start_doubles() {
	step "Starting the test doubles: KubeVirt's controller and the kubelet running patch Jobs"
	launch doubles "$doubles" --namespace shop-prod --namespace shop-dev
	note "pid ${pids[doubles]}, log: $state/logs/doubles.log"
	await_running_vms
}

# The running VMs boot first, so that the operator finds their guest OS before the windows
# open.
await_running_vms() {
	local want have deadline=$((SECONDS + 60))
	want=$(grep -c '^  runStrategy: Always' "$state/fleet.yaml")
	while ((SECONDS < deadline)); do
		have=$(kubectl get vm -A -o jsonpath='{range .items[*]}{.status.printableStatus}{"\n"}{end}' |
			grep -c '^Running$' || true)
		((have >= want)) && break
		sleep 0.5
	done
	((have >= want)) || fail_with_log "only $have of $want VMs booted" "$state/logs/doubles.log"
	note "$want running VMs booted"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_operator() {
	step "Starting the operator, its clock at $clock_start running ${clock_rate}x"
	kubectl create namespace patchkeeper-system >/dev/null
	metrics_port=$(free_port)
	launch operator "$patchkeeper" run --namespace shop-prod --namespace shop-dev \
		--clock-start "$clock_start" --clock-rate "$clock_rate" \
		--lease-namespace patchkeeper-system --http-addr "127.0.0.1:$metrics_port"
	operator_started=$(date +%s)
	note "pid ${pids[operator]}, log: $state/logs/operator.log"
	note "metrics: http://127.0.0.1:$metrics_port/metrics"
	note "the windows open in ${lead_seconds}s"
}

# --- Progress ---------------------------------------------------------------------------

# One line per window, fields separated by `|`: namespace, phase, the current run's id, wave,
# wave index and number of waves, its counts, the last run's id and counts, then what holds
# the current run.
window_states() {
	local fields=(.metadata.namespace .status.phase) run count
	for run in currentRun lastRun; do
		fields+=(".status.$run.id")
		if [[ $run == currentRun ]]; then
			fields+=(.status.currentRun.wave .status.currentRun.waveIndex .status.currentRun.waves)
		fi
		for count in waiting waking patching restoring succeeded failed skipped; do
			fields+=(".status.$run.counts.$count")
		done
	done
	fields+=(.status.currentRun.message)
	local template="" field
	for field in "${fields[@]}"; do template+="{$field}|"; done
	kubectl get maintenancewindows -A -o jsonpath="{range .items[*]}${template%|}{\"\n\"}{end}"
}

# The progress table's columns: the time, then per window its wave and seven counts.
time_width=14
wave_width=14
count_names=(wait wake patch rest 'done' fail skip)
count_widths=(5 5 6 5 5 5 5)
block_width=$((wave_width + 36))

# The counts, each right-aligned in its column.
count_cells() {
	local i=0 value
	for value in "$@"; do
		printf '%*s' "${count_widths[i]}" "$value"
		i=$((i + 1))
	done
}

progress_header() {
	note "real: time since the operator started; clock: the operator's time, ${clock_rate}x as fast"
	note "wait: waiting for its turn; wake: booting; rest: restoring power; skip: not patched"
	local counts
	counts=$(count_cells "${count_names[@]}")
	printf '\n%s%*s  %-*s  %s%s\n' "$bold" "$time_width" "" "$block_width" \
		"shop-prod: production-patch-tuesday" "shop-dev: dev-nightly" "$reset"
	printf '%s%-*s  %-*s%s  %-*s%s%s\n' "$bold" "$time_width" "real  clock" \
		"$wave_width" "wave" "$counts" "$wave_width" "wave" "$counts" "$reset"
}

# The columns of one window: its wave and counts while it runs, the last run's counts once
# it has ended, or when it opens.
window_columns() {
	local id=$2 wave=${3:-remainder} index=$4 waves=$5 last_id=${13} hold=${21}
	if [[ $hold == *" soaks until "* ]]; then
		printf '%-*s' "$wave_width" "$wave soaking"
		count_cells "${@:6:7}"
	elif [[ -n $id ]]; then
		printf '%-*s' "$wave_width" "$wave $((index + 1))/$waves"
		count_cells "${@:6:7}"
	elif [[ -n $last_id ]]; then
		printf '%-*s' "$wave_width" "ended"
		count_cells "${@:14:7}"
	else
		printf '%-*s' "$block_width" "opens at $(date -u -d "@$opens_at" +%H:%M:%S)"
	fi
}

# Sets progress_status to the windows' columns; returns 0 once both windows' runs have ended.
progress_line() {
	local states namespace fields ended=0
	local -a columns
	states=$(window_states)
	progress_status=""
	for namespace in shop-prod shop-dev; do
		fields=$(grep "^$namespace|" <<<"$states" | cut -d'|' -f2-) || true
		IFS='|' read -r -a columns <<<"$fields|"
		while ((${#columns[@]} < 21)); do columns+=(""); done
		progress_status+="  $(window_columns "${columns[@]}")"
		[[ -z ${columns[1]} && -n ${columns[12]} ]] && ended=$((ended + 1))
	done
	progress_status=${progress_status%"${progress_status##*[! ]}"}
	((ended == 2))
}

# The operator's time, `elapsed` real seconds after it started.
clock_now() {
	date -u -d "@$((clock_start_epoch + $1 * clock_rate))" +%H:%M:%S
}

# On a terminal wide enough, one line rewritten in place; elsewhere, a new line whenever
# something changed (a rewritten line that wraps would leave its start behind).
print_progress() {
	local line
	line=$(printf '%-*s%s' "$time_width" "$1" "$progress_status")
	if [[ -t 1 ]] && (($(tput cols 2>/dev/null || echo 0) > ${#line})); then
		printf '\r\e[K%s' "$line"
		progress_in_place=true
	elif [[ $progress_status != "$previous_status" ]]; then
		printf '%s\n' "$line"
	fi
	previous_status=$progress_status
}

follow_progress() {
	step "The windows run"
	progress_header
	local elapsed finished=false
	previous_status=""
	progress_in_place=false
	while true; do
		progress_line && finished=true
		elapsed=$(($(date +%s) - operator_started))
		print_progress "$(printf '%2d:%02d %s' $((elapsed / 60)) $((elapsed % 60)) "$(clock_now "$elapsed")")"
		$finished && break
		((elapsed < timeout_seconds)) || progress_timed_out
		kill -0 "${pids[operator]}" 2>/dev/null ||
			fail_with_log "the operator stopped" "$state/logs/operator.log"
		sleep 1
	done
	if $progress_in_place; then echo; fi
	note "both runs ended $((elapsed / 60))m$((elapsed % 60))s after the operator started"
}

progress_timed_out() {
	if $progress_in_place; then echo; fi
	kubectl get maintenancewindows -A -o wide >&2
	die "the windows' runs did not end within ${timeout_seconds}s; see $state/logs/operator.log"
}

# --- The result, as kubectl shows it ----------------------------------------------------

# Like `show`, for a command whose output is shown from its first line matching `from`.
show_from() {
	local from=$1 what=$2
	shift 2
	printf '%s$ %s%s   %s# %s%s\n' "$dim" "$*" "$reset" "$dim" "$what" "$reset"
	"$@" | sed -n "/$from/,\$p"
}

show_windows() {
	heading "Windows: how their runs ended"
	show kubectl get maintenancewindows -A
	echo
	show kubectl get maintenancewindows -A -o custom-columns='NAME:.metadata.name,RESULT:.status.lastRun.result,VMS:.status.lastRun.counts.total,DONE:.status.lastRun.counts.succeeded,FAILED:.status.lastRun.counts.failed,SKIPPED:.status.lastRun.counts.skipped'
}

show_fleet() {
	heading "Managed VMs: one per VirtualMachine, made by the operator"
	local behind=$(((operator_started - clock_start_epoch) / 60))
	comment "LAST PATCHED is on the operator's clock: it started $behind minutes back and ran ${clock_rate}x"
	show kubectl get managedvms -A
}

show_woken_vm() {
	heading "A dormant VM, woken, patched and put back to sleep right after its own run"
	show_from '^  History:' "from its history on" kubectl describe managedvm -n shop-prod batch-1
}

show_retirement() {
	heading "Flagged for retirement: not worth patching, so skipped by the windows"
	show kubectl get managedvms -A -l patchkeeper.io/verdict=retire -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,REASONS:.status.verdict.reasons[*].reason,EVIDENCE:.status.verdict.reasons[*].message'
}

show_exceptions() {
	heading "Exceptions: payments-1 is frozen (not patched); legacy-erp keeps its old OS and PostgreSQL"
	show kubectl get patchexceptions -n shop-prod
	echo
	show kubectl get managedvms -n shop-prod payments-1 legacy-erp -o custom-columns='NAME:.metadata.name,EXCEPTIONS:.status.exceptions,OS:.status.os.prettyName,VERDICT:.status.verdict.decision,LAST RUN:.status.history[0].reason,NOT INSTALLED:.status.compliance.pendingUpdates[*].name'
}

show_failures() {
	heading "A VM whose every run fails: each failed run is counted, and 3 in a row flag it for retirement"
	show kubectl get managedvm -n shop-prod search-1 -o custom-columns='NAME:.metadata.name,PHASE:.status.patch.phase,LAST RUN:.status.history[0].result,CONSECUTIVE FAILURES:.status.consecutiveFailures'
	echo
	show kubectl get events -n shop-prod --field-selector involvedObject.kind=ManagedVM,involvedObject.name=search-1,type=Warning
}

show_report() {
	heading "The fleet report"
	show patchkeeper report
}

patchkeeper() { "$patchkeeper" "$@"; }

show_results() {
	step "The result, as kubectl shows it"
	show_windows
	show_fleet
	show_woken_vm
	show_retirement
	show_exceptions
	show_failures
	show_report
}

# --- The end ----------------------------------------------------------------------------

finish() {
	local took=$(($(date +%s) - started_at))
	step "Done in $((took / 60))m$((took % 60))s"
	$keep || return 0
	write_stop_script
	note "The control plane, the operator and the doubles keep running. Explore with:"
	note "  source $state/testbed/env"
	note "  kubectl get patchkeeper -A"
	note "  kubectl describe maintenancewindow -n shop-prod production-patch-tuesday"
	note "  $patchkeeper report"
	note "Logs: $state/logs/"
	note "Stop everything: $state/stop"
}

write_stop_script() {
	cat >"$state/stop" <<EOF
#!/usr/bin/env bash
# Stops what scripts/demo.sh --keep left running, and removes its state directory.
stop() {
	kill -TERM "\$1" 2>/dev/null || return 0
	while kill -0 "\$1" 2>/dev/null; do sleep 0.2; done
}
stop ${pids[operator]}
stop ${pids[doubles]}
stop ${pids[control-plane]}
rm -rf "$state"
echo "patchkeeper demo stopped"
EOF
	chmod +x "$state/stop"
}

main() {
	parse_args "$@"
	configure
	state=$(mktemp -d /tmp/patchkeeper-demo.XXXXXX)
	mkdir -p "$state/logs"
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
	local size=31
	$short && size=10
	printf '%spatchkeeper demo%s: %s VMs in two namespaces, two maintenance windows opening now.\n' \
		"$bold" "$reset" "$size"
	note "state: $state"

	build
	start_control_plane
	install_crds
	plan_clock
	install_samples
	create_fleet
	start_doubles
	start_operator
	follow_progress
	show_results
	finish
}

main "$@"
