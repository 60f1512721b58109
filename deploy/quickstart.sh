#!/usr/bin/env bash
# ovnet quick start: three simulated hosts on one machine, one overlay network across them.
#
#   sudo ./deploy/quickstart.sh
#
# On a Debian machine (as root) it installs the system packages it lacks (`deploy/deps.sh build
# agent quickstart`, the one list of them), builds the workspace in release mode, then builds this
# in network namespaces:
#
#   qs-ul      underlay: bridge ulbr 192.168.50.254/24, etcd on :2379
#   qs-host1   eth0 192.168.50.1/24, ovnet-agent    qs-web1: container on host1
#   qs-host2   eth0 192.168.50.2/24, ovnet-agent    qs-web2: container on host2
#   qs-host3   eth0 192.168.50.3/24, ovnet-agent    qs-web3: container on host3
#
# creates network `demo` with ovctl, connects one container per host, and shows
# `ovctl network inspect demo`, a ping and a 5 s iperf3 run across hosts. Everything it started
# is stopped (by pid) and every namespace it created is deleted when it ends: normally, on an
# error, or on Ctrl-C. It refuses to run if any of its namespaces already exists.
# Needs Rust (cargo) already installed; see https://rustup.rs.
#
# For the test suite (testing/quickstart): OVNET_QUICKSTART_BIN=DIR uses the ovnet-agent and
# ovctl in DIR instead of building them, and OVNET_QUICKSTART_PREFIX=P names the namespaces
# P-ul, P-host1, ... instead of qs-ul, qs-host1, ...
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=${OVNET_QUICKSTART_PREFIX:-qs}
UNDERLAY=$P-ul
HOSTS=("$P-host1" "$P-host2" "$P-host3")
CONTAINERS=("$P-web1" "$P-web2" "$P-web3")
ETCD_URL=http://192.168.50.254:2379

WORK=""
PIDS=()        # processes we started, stopped in reverse order
NAMESPACES=()  # namespaces we created, deleted in reverse order

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((${#PIDS[@]} + ${#NAMESPACES[@]})); then
        say "cleaning up"
    fi
    # One at a time, newest first: the agents leave the cluster cleanly before etcd stops.
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#NAMESPACES[@]} - 1; i >= 0; i--)); do
        ip netns del "${NAMESPACES[i]}" 2>/dev/null
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if ((rc != 0 && !INTERRUPTED)); then
            for f in "$WORK"/*.log; do
                [[ -e $f ]] || continue
                printf '\n--- last lines of %s\n' "$(basename "$f")" >&2
                tail -n 15 "$f" >&2
            done
        fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}
INTERRUPTED=0
trap cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

# Runs a command in the background inside namespace $1, logging to $WORK/$2.log; records its
# pid (`ip netns exec` execs the command, so the pid is the command's own).
start_in() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$WORK/$log.log" 2>&1 &
    PIDS+=($!)
}

# Polls "$@" every 0.2 s for up to $1 seconds.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

add_ns() {
    ip netns add "$1"
    NAMESPACES+=("$1")
    ip -n "$1" link set lo up
}

# --- preflight -----------------------------------------------------------------------------

((EUID == 0)) || die "run as root (network namespaces, TAP devices, bridges)"
for ns in "$UNDERLAY" "${HOSTS[@]}" "${CONTAINERS[@]}"; do
    if [[ -e /var/run/netns/$ns ]]; then
        die "namespace $ns already exists (another quick start running?); remove it with \`ip netns del $ns\`"
    fi
done

say "installing what is missing (deploy/deps.sh build agent quickstart)"
"$ROOT/deploy/deps.sh" build agent quickstart
modprobe tun 2>/dev/null || true
[[ -c /dev/net/tun ]] || die "/dev/net/tun is missing: the agent needs TAP devices (modprobe tun)"

if [[ -n ${OVNET_QUICKSTART_BIN:-} ]]; then
    BIN=$OVNET_QUICKSTART_BIN
else
    command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs first"
    say "building ovnet-agent and ovctl (cargo build --release; a few minutes the first time)"
    (cd "$ROOT" && cargo build --release -p ovnet-agent -p ovctl)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
AGENT=$BIN/ovnet-agent
OVCTL=$BIN/ovctl
[[ -x $AGENT && -x $OVCTL ]] || die "build did not produce $AGENT and $OVCTL"

WORK=$(mktemp -d /tmp/ovnet-quickstart.XXXXXX)

# --- the simulated network -----------------------------------------------------------------

say "underlay $UNDERLAY with etcd at $ETCD_URL"
add_ns "$UNDERLAY"
# A fixed MAC: a bridge with a kernel-chosen one takes the lowest MAC of its ports, so each
# host joining would change it and strand the ARP entries of hosts already talking to etcd.
ip -n "$UNDERLAY" link add ulbr address 02:00:c0:a8:32:fe type bridge
ip -n "$UNDERLAY" addr add 192.168.50.254/24 dev ulbr
ip -n "$UNDERLAY" link set ulbr up
mkdir -m 700 "$WORK/etcd"
start_in "$UNDERLAY" etcd etcd --name qs --data-dir "$WORK/etcd" \
    --listen-client-urls "$ETCD_URL,http://127.0.0.1:2379" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster qs=http://127.0.0.1:2380 --initial-cluster-state new

etcd_healthy() {
    ip netns exec "$UNDERLAY" bash -c '
        exec 3<>/dev/tcp/127.0.0.1/2379 || exit 1
        printf "GET /health HTTP/1.0\r\n\r\n" >&3
        timeout 2 cat <&3' | grep -q '"health":"true"'
}
wait_for 30 "etcd to become healthy" etcd_healthy

for i in 1 2 3; do
    h=${HOSTS[i - 1]}
    say "host $h: eth0 192.168.50.$i, ovnet-agent --node host$i"
    add_ns "$h"
    ip -n "$h" link add eth0 type veth peer name "qsh$i" netns "$UNDERLAY"
    ip -n "$UNDERLAY" link set "qsh$i" master ulbr up
    ip -n "$h" addr add "192.168.50.$i/24" dev eth0
    ip -n "$h" link set eth0 up
    # Each simulated host keeps its node id in a state directory of its own (on a real host,
    # the default /var/lib/ovnet).
    start_in "$h" "agent-host$i" env RUST_LOG=info "$AGENT" --node "host$i" \
        --etcd "$ETCD_URL" --vtep-ip "192.168.50.$i" --api "$WORK/host$i.sock" \
        --state-dir "$WORK/host$i"
done

ovctl() { # ovctl HOST_NUMBER ARGS...
    local i=$1
    shift
    ip netns exec "${HOSTS[i - 1]}" "$OVCTL" --agent "$WORK/host$i.sock" "$@"
}
for i in 1 2 3; do
    wait_for 15 "the agent of host$i" ovctl "$i" node ls
done
ovctl 1 node ls

# --- the overlay -----------------------------------------------------------------------------

say "host1: ovctl network create -d overlay demo"
ovctl 1 network create -d overlay demo
say "host2: ovctl network ls"
ovctl 2 network ls

for i in 1 2 3; do
    c=${CONTAINERS[i - 1]}
    say "host$i: ovctl network connect demo web$i --netns $c"
    add_ns "$c"
    ovctl "$i" network connect demo "web$i" --netns "$c"
    ip -n "$c" -br addr show dev eth0
done

say "ovctl network inspect demo"
ovctl 3 network inspect demo

ip_of() { # address of eth0 in container namespace $1
    ip -n "$1" -o -4 addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'
}
ip1=$(ip_of "${CONTAINERS[0]}")
ip3=$(ip_of "${CONTAINERS[2]}")

say "ping from web1 (host1) to web3 (host3) at $ip3"
ip netns exec "${CONTAINERS[0]}" ping -n -c 3 -i 0.2 "$ip3"

say "iperf3 for 5 s from web1 ($ip1, host1) to web3 ($ip3, host3)"
start_in "${CONTAINERS[2]}" iperf3-server iperf3 -s -1 -B "$ip3"
wait_for 10 "the iperf3 server" bash -c \
    "ip netns exec ${CONTAINERS[2]} ss -Hltn 'sport = :5201' | grep -q ."
ip netns exec "${CONTAINERS[0]}" iperf3 -c "$ip3" -t 5 -f m

say "data-plane counters on host1"
ovctl 1 stats demo

say "done: everything worked; tearing down"
