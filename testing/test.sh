#!/usr/bin/env bash
# The project's test command (README "Testing"): installs the system packages the suite needs
# (deploy/deps.sh, the one list of them), then runs every unit, wire-format, loopback, namespace
# end-to-end, kernel-interop and etcd test. Run as root: the tests build network namespaces, TAP
# devices, bridges and kernel vxlan devices. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
((EUID == 0)) || { echo "test.sh: run as root (the tests build namespaces and devices)" >&2; exit 2; }
./deploy/deps.sh
# TAP, the kernel's vxlan (interop tests) and bridges; built into some kernels, so a failed
# modprobe is not an error: the tests say what is missing.
for module in tun vxlan bridge; do modprobe "$module" 2>/dev/null || true; done
# A test that cannot run here (missing kernel feature or privilege) prints a SKIPPED line and
# appends it to this file (ovnet_testbed::skip); the count and reasons close the run.
skipped=$(mktemp)
trap 'rm -f "$skipped"' EXIT
status=0
OVNET_SKIPPED=$skipped cargo test --workspace --all-targets --no-fail-fast "$@" || status=$?
if [[ -s $skipped ]]; then
    echo "test.sh: $(wc -l <"$skipped") test(s) skipped:"
    sed 's/^/  /' "$skipped"
else
    echo "test.sh: no test skipped"
fi
exit "$status"
