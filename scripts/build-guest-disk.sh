#!/usr/bin/env bash
# Builds a bootable BIOS disk image of the vinfra test guest.
#
#   scripts/build-guest-disk.sh OUTDIR [GUEST_DIR]
#
# GUEST_DIR (default /var/cache/vinfra/guest) holds vmlinuz and initrd.img as made by
# scripts/build-guest-image.sh. Writes OUTDIR/disk.qcow2: a FAT file system over the whole disk
# (no partition table) holding vmlinuz, initrd.img and syslinux.cfg, with the SYSLINUX boot sector
# in sector 0, so SeaBIOS boots it like any hard disk. The kernel gets "console=ttyS0 quiet", so
# the guest prints "VINFRA-GUEST BOOTED" and its counter on the serial console as with direct
# kernel boot.
#
# No loop devices and no mounts: mkfs.vfat formats an image file, mcopy (mtools) fills it,
# syslinux --install writes the boot sector into the file, qemu-img converts it to qcow2. Installs
# dosfstools, mtools, syslinux, syslinux-common and qemu-utils when missing (root). Idempotent: when
# OUTDIR/disk.qcow2 was built by this same script from the same kernel and initrd, it exits at once.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 OUTDIR [GUEST_DIR]" >&2
    exit 2
fi
OUTDIR=$1
GUEST=${2:-/var/cache/vinfra/guest}
CMDLINE="console=ttyS0 quiet"

die() {
    echo "build-guest-disk: $*" >&2
    exit 1
}

[[ -f $GUEST/vmlinuz && -f $GUEST/initrd.img ]] ||
    die "$GUEST has no vmlinuz and initrd.img; run scripts/build-guest-image.sh $GUEST first"

BUILD_ID=$(cat "$0" "$GUEST/vmlinuz" "$GUEST/initrd.img" | sha256sum | cut -d' ' -f1)
if [[ -f $OUTDIR/disk.qcow2 && -f $OUTDIR/.disk-build-id ]] &&
    [[ $(cat "$OUTDIR/.disk-build-id") == "$BUILD_ID" ]]; then
    echo "guest disk is up to date in $OUTDIR"
    exit 0
fi

need=()
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v syslinux >/dev/null || need+=(syslinux)
[[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ]] || need+=(syslinux-common)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [[ ${#need[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "missing packages (${need[*]}); run as root to install them"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${need[@]}" >&2; } ||
        die "cannot install ${need[*]}"
fi

mkdir -p "$OUTDIR"
WORK=$(mktemp -d "$OUTDIR/.build-disk.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Room for the kernel, the initrd and SYSLINUX, plus 8 MiB, rounded up to whole MiB.
bytes=$(($(stat -c %s "$GUEST/vmlinuz") + $(stat -c %s "$GUEST/initrd.img")))
size_mib=$(((bytes + 1048575) / 1048576 + 8))
raw=$WORK/disk.raw
truncate -s "${size_mib}M" "$raw"
mkfs.vfat -F 16 -n VINFRA "$raw" >/dev/null || die "mkfs.vfat failed"

cat >"$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT vinfra
PROMPT 0
TIMEOUT 0
LABEL vinfra
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF

export MTOOLS_SKIP_CHECK=1
mcopy -i "$raw" "$GUEST/vmlinuz" ::/vmlinuz || die "mcopy vmlinuz failed"
mcopy -i "$raw" "$GUEST/initrd.img" ::/initrd.img || die "mcopy initrd.img failed"
mcopy -i "$raw" "$WORK/syslinux.cfg" ::/syslinux.cfg || die "mcopy syslinux.cfg failed"
# Writes ldlinux.sys and ldlinux.c32 into the file system and the boot sector into sector 0.
syslinux --install "$raw" || die "syslinux --install failed"

qemu-img convert -q -f raw -O qcow2 "$raw" "$WORK/disk.qcow2" || die "qemu-img convert failed"
mv -f "$WORK/disk.qcow2" "$OUTDIR/disk.qcow2"
echo "$BUILD_ID" >"$OUTDIR/.disk-build-id"
echo "guest disk written to $OUTDIR/disk.qcow2 (${size_mib} MiB)"
