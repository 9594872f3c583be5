#!/usr/bin/env bash
# Everything CI checks, in the order a failure is cheapest to find: host packages, the
# control-plane binaries, formatting, lints (warnings are errors), then every test against
# the real control plane and the real guest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "host packages"
scripts/host-packages.sh

step "control-plane binaries (cached in ~/.cache/patchkeeper/testbed)"
tests/testbed/build.sh

step "formatting"
cargo fmt --all --check

step "lints"
cargo clippy --locked --all-targets -- -D warnings

step "tests"
cargo test --locked --no-fail-fast
