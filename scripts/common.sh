# Shared by lab-up.sh and test.sh: system packages and the Rust toolchain. Source it; needs root.

# Debian packages the lab and the tests need (QEMU, the guest image build, namespaces, building).
VINFRA_PACKAGES=(qemu-system-x86 qemu-utils busybox-static cpio xz-utils zstd iproute2
    dosfstools mtools syslinux syslinux-common iputils-ping ca-certificates curl build-essential pkg-config)

vinfra_die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Installs whatever of VINFRA_PACKAGES is missing; runs apt-get update only when something is.
vinfra_install_packages() {
    local missing=() p
    for p in "${VINFRA_PACKAGES[@]}"; do
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
