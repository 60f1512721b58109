#!/usr/bin/env bash
# The project's test command (README "Testing"): every unit, wire-format, loopback, namespace
# end-to-end, kernel-interop and etcd test. Needs root (network namespaces, TAP, vxlan) and
# etcd, protoc, iproute2, iperf3 installed (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --all-targets --no-fail-fast "$@"
