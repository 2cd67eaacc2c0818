# Shared by lab-up.sh, test.sh, bench.sh and check-programs.sh: system packages and the Rust
# toolchain. Source it; installing needs root.

# Debian packages the lab and the tests need: QEMU, the guest image and disk builds, namespaces,
# the switch and guard tests' tools (iperf3: the switch's QoS tests; tcpdump: the encrypted
# migration test's capture), nftables (the switch keeps VM taps out of the host's stack with
# it), the web console's browser test and page benchmark (Chromium and its WebDriver server),
# building.
VINFRA_PACKAGES=(qemu-system-x86 qemu-utils busybox-static cpio xz-utils zstd iproute2 iputils-ping
    procps ethtool socat iperf3 dosfstools mtools syslinux syslinux-common ca-certificates curl
    nftables util-linux coreutils tcpdump chromium chromium-driver build-essential pkg-config
    python3-venv clang)

# Debian packages only the benchmarks need (scripts/bench.sh installs them): their peers.
VINFRA_BENCH_PACKAGES=(openvswitch-common openvswitch-switch conntrack)

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
    [bridge]=iproute2
    [tc]=iproute2
    [ping]=iputils-ping
    [sysctl]=procps
    [ethtool]=ethtool
    [socat]=socat
    [mkfs.vfat]=dosfstools
    [mcopy]=mtools
    [syslinux]=syslinux
    [cc]=build-essential
    [gcc]=build-essential
    [clang]=clang
    [pkg-config]=pkg-config
    [iperf3]=iperf3
    [ovs-vswitchd]=openvswitch-switch
    [ovsdb-server]=openvswitch-common
    [ovsdb-tool]=openvswitch-common
    [ovs-vsctl]=openvswitch-switch
    [nft]=nftables
    [nsenter]=util-linux
    [head]=coreutils
    [timeout]=coreutils
    [setpriv]=util-linux
    [conntrack]=conntrack
    [tcpdump]=tcpdump
    [curl]=curl
    [chromium]=chromium
    [chromedriver]=chromium-driver
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
# An install can remove a package that was there (a newer qemu-utils from backports goes when
# Debian's qemu-system-x86 comes in), so the list is checked again afterwards and what went is
# installed in Debian's version.
vinfra_install_packages() {
    local missing=() p round updated=0
    [[ $# -gt 0 ]] || set -- "${VINFRA_PACKAGES[@]}"
    for round in 1 2; do
        missing=()
        for p in "$@"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
                missing+=("$p")
        done
        if [[ ${#missing[@]} -eq 0 ]]; then
            return 0
        fi
        [[ $(id -u) -eq 0 ]] ||
            vinfra_die "missing packages (${missing[*]}); run as root to install them"
        if [[ $round -eq 1 ]]; then
            echo "installing: ${missing[*]}"
        else
            echo "installing again (the first install removed them): ${missing[*]}"
        fi
        export DEBIAN_FRONTEND=noninteractive
        if [[ $updated -eq 0 ]]; then
            apt-get update -q >/dev/null || vinfra_die "apt-get update failed"
            updated=1
        fi
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
            vinfra_die "apt-get install ${missing[*]} failed"
    done
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            vinfra_die "package $p is still not installed after apt-get install"
    done
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
