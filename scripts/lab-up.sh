#!/usr/bin/env bash
# Brings up a vinfra lab on this machine (as root): installs the Debian packages it needs, builds
# vinfra in release mode and runs `vinfra lab up` (extra arguments are passed on, e.g. --hosts 2).
#
#   ./scripts/lab-up.sh [--name lab] [--hosts 3] [--vms 3] [--api-port 7443]
#
# Then use the printed `export VINFRA_URL=... VINFRA_TOKEN=... VINFRA_CA=...` line, and
# `target/release/vinfra lab down` to remove it all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

[[ $(id -u) -eq 0 ]] || vinfra_die "run as root (the lab creates network namespaces)"
vinfra_install_packages
vinfra_ensure_rust
cargo build --release -p vinfra
exec target/release/vinfra lab up "$@"
