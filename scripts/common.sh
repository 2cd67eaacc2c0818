# Shared by lab-up.sh, test.sh, bench.sh and check-programs.sh: system packages and the Rust
# toolchain. Source it; installing needs root.

# Debian packages the lab and the tests need: QEMU, the guest image and disk builds, namespaces,
# the switch and guard tests' tools, building.
VINFRA_PACKAGES=(qemu-system-x86 qemu-utils busybox-static cpio xz-utils zstd iproute2 iputils-ping
    procps ethtool socat dosfstools mtools syslinux syslinux-common ca-certificates curl build-essential
    pkg-config)

# Debian packages only the benchmarks need (scripts/bench.sh installs them): their peers.
VINFRA_BENCH_PACKAGES=(iperf3 openvswitch-common openvswitch-switch)

# Every program the code (src, tests, benches), these scripts or the build (cc, pkg-config)
# execute, and the Debian package that has it. scripts/check-programs.sh fails when the code executes a program that is neither
# here nor in VINFRA_PRESENT_PROGRAMS, or whose package is in no list above (a program a test
# executes must be in VINFRA_PACKAGES); test helpers name the package from this map.
declare -A VINFRA_PROGRAM_PACKAGE=(
    [qemu-system-x86_64]=qemu-system-x86
    [qemu-img]=qemu-utils
    [busybox]=busybox-static
    [cpio]=cpio
    [xz]=xz-utils
    [zstd]=zstd
    [ip]=iproute2
    [nstat]=iproute2
    [ping]=iputils-ping
    [sysctl]=procps
    [ethtool]=ethtool
    [socat]=socat
    [mkfs.vfat]=dosfstools
    [mcopy]=mtools
    [syslinux]=syslinux
    [cc]=build-essential
    [pkg-config]=pkg-config
    [iperf3]=iperf3
    [ovs-vswitchd]=openvswitch-switch
    [ovsdb-server]=openvswitch-common
    [ovsdb-tool]=openvswitch-common
    [ovs-vsctl]=openvswitch-switch
)

# Programs every Debian system has (Essential packages: bash, dash, coreutils, debianutils, dpkg,
# gzip, findutils, grep, sed, util-linux; and apt) and the project's own binaries and tools.
VINFRA_PRESENT_PROGRAMS=(sh bash cat echo sleep env timeout which find grep sed gzip sha256sum
    dpkg dpkg-deb dpkg-query apt-get apt-cache vinfra vinfra-switchd vinfra-guard cargo rustup)

vinfra_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Installs whatever of the given packages (default: VINFRA_PACKAGES) is missing; runs apt-get
# update only when something is.
vinfra_install_packages() {
    local missing=() p
    [[ $# -gt 0 ]] || set -- "${VINFRA_PACKAGES[@]}"
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || vinfra_die "missing packages (${missing[*]}); run as root to install them"
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || vinfra_die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        vinfra_die "apt-get install ${missing[*]} failed"
}

# Makes cargo available: from PATH, from ~/.cargo/env, or through an installed rustup.
vinfra_ensure_rust() {
    if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null && command -v rustup >/dev/null; then
        rustup toolchain install stable --profile minimal -c clippy -c rustfmt ||
            vinfra_die "rustup could not install the stable toolchain"
    fi
    command -v cargo >/dev/null ||
        vinfra_die "cargo not found: install Rust (1.85 or newer, with clippy and rustfmt) via rustup, then run this again"
}
