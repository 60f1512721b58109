#!/usr/bin/env bash
# The one list of system packages ovnet needs, and the step that installs them.
#
#   sudo ./deploy/deps.sh [GROUP...]     install what is missing (default: every group)
#   ./deploy/deps.sh --check [GROUP...]  say what is missing, install nothing (exit 1 if anything is)
#   ./deploy/deps.sh --list              print the table: group, package, what ovnet uses from it
#
# Groups: build (compiling the workspace), agent (what ovnet-agent runs on a host), quickstart
# (the demo's etcd and traffic tools, which the bench runs too, and the font of the bench's
# plot), test (everything else the test suite runs).
# The quick start calls `deps.sh build agent quickstart`, the test command `deps.sh`; nothing
# else installs system packages. Idempotent: a package already installed is not touched, and
# when nothing is missing it does not even run `apt-get update`. Debian (apt-get) only.
#
# The test `every_program_ovnet_runs_comes_from_a_listed_package` reads `--list` and fails when
# the code, the tests or the scripts run a program that no package here provides.
set -euo pipefail

# group       package                       programs (or files) ovnet uses from it
# (gcc and libc6-dev: cargo links with `cc`, which a minimal Debian with rustup lacks)
TABLE=(
    "build      gcc                           /usr/bin/gcc"
    "build      libc6-dev                     /usr/lib/x86_64-linux-gnu/crt1.o"
    "build      protobuf-compiler             protoc"
    "build      libprotobuf-dev               /usr/include/google/protobuf/descriptor.proto"
    "agent      iproute2                      ip bridge ss"
    "agent      util-linux                    nsenter unshare"
    "agent      nftables                      nft"
    "agent      libnftables1                  /usr/lib/x86_64-linux-gnu/libnftables.so.1"
    "agent      kmod                          modprobe"
    "agent      procps                        sysctl ps pgrep kill"
    "agent      iptables                      iptables"
    "quickstart etcd-server                   etcd"
    "quickstart iperf3                        iperf3"
    "quickstart iputils-ping                  ping"
    "quickstart fonts-dejavu-core             /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    "test       etcd-client                   etcdctl"
    "test       ethtool                       ethtool"
    "test       prometheus                    promtool"
    "test       systemd                       systemd-analyze"
    "test       libc-bin                      getent"
    "test       docker.io                     /usr/sbin/dockerd /usr/bin/docker"
    "test       busybox-static                /bin/busybox"
    "test       coreutils                     mkfifo"
    "test       containernetworking-plugins   /usr/lib/cni/portmap"
)
GROUPS_ALL=(build agent quickstart test)

die() { printf 'deps.sh: %s\n' "$*" >&2; exit 2; }

mode=install
case ${1:-} in
--list)
    printf '%s\n' "${TABLE[@]}" | awk '{ printf "%-11s %-28s", $1, $2; for (i = 3; i <= NF; i++) printf " %s", $i; print "" }'
    exit 0
    ;;
--check) mode=check; shift ;;
-h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

wanted=("$@")
((${#wanted[@]})) || wanted=("${GROUPS_ALL[@]}")
for g in "${wanted[@]}"; do
    [[ " ${GROUPS_ALL[*]} " == *" $g "* ]] || die "unknown group '$g' (groups: ${GROUPS_ALL[*]})"
done

installed() { # package
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

missing=()
for row in "${TABLE[@]}"; do
    read -r group package _ <<<"$row"
    [[ " ${wanted[*]} " == *" $group "* ]] || continue
    if ! command -v dpkg-query >/dev/null; then
        die "this is not a Debian-style system (no dpkg-query): install the packages of \`$0 --list\` with your package manager"
    fi
    installed "$package" || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: every package of ${wanted[*]} is installed"
    exit 0
fi
if [[ $mode == check ]]; then
    echo "deps.sh: missing: ${missing[*]}"
    exit 1
fi
command -v apt-get >/dev/null ||
    die "missing ${missing[*]} and there is no apt-get: install them with your package manager"
((EUID == 0)) || die "missing ${missing[*]}: run as root (sudo $0 ${wanted[*]}) to install them"

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed: check the machine's package sources"
# Recommends are left out on purpose: every package ovnet needs is named above.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed (see above)"
echo "deps.sh: installed ${missing[*]}"
