#!/usr/bin/env bash
# Builds the small vinfra test guest: a Debian cloud kernel and a busybox initramfs.
#
#   scripts/build-guest-image.sh OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/VERSION (the kernel release). Runs as root
# (it may apt-get install busybox-static and cpio). Idempotent: when OUTDIR already holds an image
# built from the same kernel by this same script, it exits at once.
#
# The guest's /init:
#   - prints "VINFRA-GUEST BOOTED" on the serial console (console=ttyS0);
#   - with "vinfra.probe=1" on the kernel command line prints "VINFRA-PROBE-OK" and powers off;
#   - otherwise powers off on the ACPI power button (QMP system_powerdown), printing
#     "VINFRA-GUEST POWERDOWN", configures eth0 when "vinfra.ip=ADDR/PREFIX" is given (with a
#     default route when "vinfra.gw=IP" is given too: "VINFRA-GUEST GW IP"), and prints
#     "VINFRA-COUNTER <n> <uptime> <wall clock, s>" every 0.5 s (parsers read fields 1 and 2; more
#     fields may be appended);
#   - otherwise also answers each line typed on the serial console (ttyS0) with
#     "VINFRA-TYPED <line>" (the terminal echoes what is typed as well);
#   - with "vinfra.ignore_acpi=1" prints "VINFRA-GUEST IGNORES ACPI" at boot and, on the power
#     button, only "VINFRA-GUEST POWER BUTTON IGNORED": a guest that hangs on shutdown, so that a
#     graceful stop has to end in a forced one;
#   - with "vinfra.dirty=MIB" also keeps rewriting a MIB-MiB file on a tmpfs in the background, at
#     the lowest priority (renice 19), so that live migration sees a guest that dirties memory;
#   - with "vinfra.fill=WORD:MIB" fills a MIB-MiB file on a tmpfs with lines of WORD (WORD in
#     [A-Za-z0-9], MIB 1 to 1024) once and prints "VINFRA-GUEST FILLED WORD": a pattern in guest
#     memory that only the guest wrote (the encrypted migration test looks for it on the wire);
#   - with "vinfra.burn=1" also runs a busy loop in the background (one vCPU always busy, no
#     memory written), so that the host sees CPU demand; prints "VINFRA-GUEST BURN";
#   - with "vinfra.dhcp=1" configures eth0 by DHCP only (busybox udhcpc: address, prefix, router,
#     MTU; a "vinfra.ip=" is then ignored) and prints "VINFRA-DHCP ADDR/PREFIX mtu=MTU router=IP"
#     ("router=-" without one), or "VINFRA-DHCP fail" without a lease;
#   - with "vinfra.ping=IP" also pings IP once a second and prints "VINFRA-PING <IP> ok ttl=<TTL>"
#     (the reply's IP TTL) or "VINFRA-PING <IP> fail" for each attempt;
#   - with "vinfra.pingfast=IP[,INTERVAL_MS]" also pings IP continuously every INTERVAL_MS
#     (default 20, 1 to 60000) and prints, instead of a line per ping:
#       "VINFRA-PINGFAST <IP> start <interval_ms>" once;
#       "VINFRA-PINGFAST <IP> ok <replies> <last_seq>" at most once a second while replies come;
#       "VINFRA-PINGGAP <lost> <first_lost_seq> <interval_ms> <silence_ms>" when replies resume
#         after <lost> consecutive unanswered pings; <silence_ms> is the guest's time between the
#         replies before and after the gap (/proc/uptime, 10 ms resolution);
#       "VINFRA-PINGFAST <IP> restart" when ping exited (it is started again after 1 s).
#   - with "vinfra.tick=MS" (1 to 1000) also prints "VINFRA-TICK <n> <uptime>" every MS ms from a
#     loop of its own, so that a pause of the guest shows as a gap between consecutive lines;
#   - with "vinfra.vlan=VID:ADDR/PREFIX[,VID:ADDR/PREFIX…]" also creates an 802.1Q
#     sub-interface eth0.VID of eth0 for each (the 8021q module is in the image), with that
#     address, and prints "VINFRA-GUEST VLAN <VID> <ADDR/PREFIX>" (or "… fail"): a guest on a
#     trunk NIC; eth0 is brought up without an address of its own unless "vinfra.ip=" gives one;
#   - with "vinfra.shell=1" runs a shell (no echo) on the second serial port, ttyS1: a benchmark
#     or test drives the guest's own tools (busybox nc, dd, ping) through it.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
SELF_SUM=$(sha256sum "$0" | cut -d' ' -f1)

MODULES=(failover net_failover virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev
    virtio_pci virtio_net virtio_balloon button evdev llc stp garp mrp 8021q)

die() {
    echo "build-guest-image: $*" >&2
    exit 1
}

apt_updated=0
apt_update_once() {
    if [[ $apt_updated -eq 0 ]]; then
        apt_updated=1
        apt-get update -q >&2 || die "apt-get update failed"
    fi
}

# The kernel image package the cloud-amd64 metapackage points at (the newest one).
pick_kernel_package() {
    local pkg
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9].*-cloud-amd64$/ {print $2}' | sort -V | tail -n1)
    if [[ -z $pkg ]]; then
        pkg=$(apt-cache search --names-only '^linux-image-6\.1\..*-cloud-amd64$' 2>/dev/null |
            awk '{print $1}' | grep -v -- '-dbg$' | sort -V | tail -n1)
    fi
    echo "$pkg"
}

PKG=$(pick_kernel_package)
if [[ -z $PKG ]]; then
    apt_update_once
    PKG=$(pick_kernel_package)
fi
[[ -n $PKG ]] || die "no linux-image-*-cloud-amd64 package known to apt"
KVER=${PKG#linux-image-}
BUILD_ID="$KVER $SELF_SUM"

if [[ -f $OUTDIR/vmlinuz && -f $OUTDIR/initrd.img && -f $OUTDIR/VERSION && -f $OUTDIR/.build-id ]] &&
    [[ $(cat "$OUTDIR/VERSION") == "$KVER" && $(cat "$OUTDIR/.build-id") == "$BUILD_ID" ]]; then
    echo "guest image for $KVER is up to date in $OUTDIR"
    exit 0
fi

need=()
[[ -x /bin/busybox || -x /usr/bin/busybox ]] && dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [[ ${#need[@]} -gt 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
        { apt_update_once; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; } ||
        die "cannot install ${need[*]}"
fi
BUSYBOX=$(command -v busybox) || die "busybox not found"

mkdir -p "$OUTDIR"
WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && apt-get download -q "$PKG" >&2) ||
    { apt_update_once; (cd "$WORK" && apt-get download -q "$PKG" >&2); } ||
    die "apt-get download $PKG failed"
dpkg-deb -x "$WORK"/"$PKG"_*.deb "$WORK/kernel"

VMLINUZ="$WORK/kernel/boot/vmlinuz-$KVER"
[[ -f $VMLINUZ ]] || die "the package has no /boot/vmlinuz-$KVER"
MODDIR="$WORK/kernel/lib/modules/$KVER"
[[ -d $MODDIR ]] || MODDIR="$WORK/kernel/usr/lib/modules/$KVER"
[[ -d $MODDIR ]] || die "the package has no modules directory for $KVER"

ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,etc/acpi/PWRF,etc/acpi-ignore/PWRF,lib/modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"

# Modules, in load order; built-in ones are skipped.
: >"$ROOT/lib/modules/order"
for m in "${MODULES[@]}"; do
    if grep -qE "/${m}\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
        continue
    fi
    f=$(find "$MODDIR/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) -print -quit)
    if [[ -z $f ]]; then
        # button and evdev (power button events) are optional; the rest are required.
        [[ $m == button || $m == evdev ]] && continue
        die "module $m not found in $PKG"
    fi
    case $f in
    *.ko.xz) xz -dc "$f" >"$ROOT/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -dcq "$f" >"$ROOT/lib/modules/$m.ko" ;;
    *) cp "$f" "$ROOT/lib/modules/$m.ko" ;;
    esac
done

# Load order: each module after the ones it depends on (from the modules' own "depends=" field).
left=()
for m in "${MODULES[@]}"; do [[ -f $ROOT/lib/modules/$m.ko ]] && left+=("$m"); done
loaded=" "
while [[ ${#left[@]} -gt 0 ]]; do
    next=()
    for m in "${left[@]}"; do
        deps=$(grep -ao 'depends=[a-z0-9_,-]*' "$ROOT/lib/modules/$m.ko" | head -n1 | cut -d= -f2 | tr ',' ' ')
        ready=1
        for d in $deps; do
            [[ $loaded == *" $d "* ]] && continue
            [[ -f $ROOT/lib/modules/$d.ko ]] || die "module $m needs $d, which is not in the list"
            ready=0
        done
        if [[ $ready -eq 1 ]]; then
            echo "$m" >>"$ROOT/lib/modules/order"
            loaded+="$m "
        else
            next+=("$m")
        fi
    done
    [[ ${#next[@]} -lt ${#left[@]} ]] || die "module dependency cycle among: ${next[*]}"
    left=("${next[@]}")
done

# busybox acpid runs CONFDIR/PWRF/00000080 on the power button.
cat >"$ROOT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "VINFRA-GUEST POWERDOWN" >/dev/console
sync
poweroff -f
EOF
chmod 755 "$ROOT/etc/acpi/PWRF/00000080"
# With vinfra.ignore_acpi=1 acpid reads this directory instead: the button is seen, and ignored.
cat >"$ROOT/etc/acpi-ignore/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "VINFRA-GUEST POWER BUTTON IGNORED" >/dev/console
EOF
chmod 755 "$ROOT/etc/acpi-ignore/PWRF/00000080"

# udhcpc runs this with "deconfig", "bound", "renew" or "nak"; the lease is in the environment.
cat >"$ROOT/etc/udhcpc.script" <<'EOF'
#!/bin/sh
case $1 in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    prefix=$mask
    [ -n "$prefix" ] || prefix=$(ipcalc -p "$ip" "$subnet" | cut -d= -f2)
    ip addr flush dev "$interface"
    ip addr add "$ip/$prefix" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    gw=${router%% *}
    echo "VINFRA-DHCP $ip/$prefix mtu=$(cat "/sys/class/net/$interface/mtu") router=${gw:--}"
    ;;
esac
exit 0
EOF
chmod 755 "$ROOT/etc/udhcpc.script"

# Reads busybox ping's output (and "VINFRA-PINGFAST-RESTART" when ping exited); -v target, ms.
# Prints one line when a run of unanswered pings ends and a progress line at most once a second.
cat >"$ROOT/etc/pinggap.awk" <<'EOF'
function now(line, f) {
    line = ""
    getline line <"/proc/uptime"
    close("/proc/uptime")
    split(line, f, " ")
    return f[1]
}
BEGIN {
    printf "VINFRA-PINGFAST %s start %d\n", target, ms
    fflush()
}
/^VINFRA-PINGFAST-RESTART/ {
    have = 0
    printf "VINFRA-PINGFAST %s restart\n", target
    fflush()
    next
}
/ bytes from .* seq=/ && !/DUP/ {
    s = $0
    sub(/.* seq=/, "", s)
    sub(/ .*/, "", s)
    seq = s + 0
    t = now()
    if (have) {
        d = (seq - last + 65536) % 65536
        # A repeated or late reply: the gap it belonged to was reported already.
        if (d == 0 || d >= 32768)
            next
        if (d > 1) {
            printf "VINFRA-PINGGAP %d %d %d %.0f\n", d - 1, (last + 1) % 65536, ms, (t - lastt) * 1000
            fflush()
        }
    }
    have = 1
    last = seq
    lastt = t
    got++
    if (int(t) != shown) {
        shown = int(t)
        printf "VINFRA-PINGFAST %s ok %d %d\n", target, got, seq
        fflush()
    }
}
EOF

cat >"$ROOT/init" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "vinfra-guest: insmod $m failed"
done </lib/modules/order
echo "VINFRA-GUEST BOOTED"
cmdline=$(cat /proc/cmdline)
acpi_dir=/etc/acpi
probe=0
ip=
gw=
dirty=
fill=
burn=0
dhcp=0
ping_target=
pingfast=
tick=
shell=0
vlans=
for arg in $cmdline; do
    case $arg in
    vinfra.ignore_acpi=1) acpi_dir=/etc/acpi-ignore ;;
    vinfra.probe=1) probe=1 ;;
    vinfra.ip=*) ip=${arg#vinfra.ip=} ;;
    vinfra.gw=*) gw=${arg#vinfra.gw=} ;;
    vinfra.dirty=*) dirty=${arg#vinfra.dirty=} ;;
    vinfra.fill=*) fill=${arg#vinfra.fill=} ;;
    vinfra.burn=1) burn=1 ;;
    vinfra.dhcp=1) dhcp=1 ;;
    vinfra.ping=*) ping_target=${arg#vinfra.ping=} ;;
    vinfra.pingfast=*) pingfast=${arg#vinfra.pingfast=} ;;
    vinfra.tick=*) tick=${arg#vinfra.tick=} ;;
    vinfra.shell=1) shell=1 ;;
    vinfra.vlan=*) vlans=${arg#vinfra.vlan=} ;;
    esac
done
if [ "$probe" = 1 ]; then
    echo "VINFRA-PROBE-OK"
    sync
    poweroff -f
fi
acpid -c "$acpi_dir" -l /tmp/acpid.log
[ "$acpi_dir" = /etc/acpi-ignore ] && echo "VINFRA-GUEST IGNORES ACPI"
ip link set lo up
if [ -n "$ip" ] && [ "$dhcp" = 1 ]; then
    echo "VINFRA-GUEST IP $ip ignored (vinfra.dhcp=1)"
elif [ -n "$ip" ]; then
    ip addr add "$ip" dev eth0 && ip link set eth0 up && echo "VINFRA-GUEST IP $ip"
    if [ -n "$gw" ]; then
        ip route add default via "$gw" dev eth0 && echo "VINFRA-GUEST GW $gw"
    fi
fi
if [ -n "$vlans" ]; then
    ip link set eth0 up
    for v in $(echo "$vlans" | tr ',' ' '); do
        vid=${v%%:*}
        addr=${v#*:}
        if ip link add link eth0 name "eth0.$vid" type vlan id "$vid" &&
            ip addr add "$addr" dev "eth0.$vid" && ip link set "eth0.$vid" up; then
            echo "VINFRA-GUEST VLAN $vid $addr"
        else
            echo "VINFRA-GUEST VLAN $vid fail"
        fi
    done
fi
if [ "$dhcp" = 1 ]; then
    ip link set eth0 up
    udhcpc -i eth0 -n -q -t 5 -T 2 -O mtu -s /etc/udhcpc.script || echo "VINFRA-DHCP fail"
fi
fill_word=${fill%%:*}
fill_mib=${fill#*:}
case $fill_word:$fill_mib in
:* | *[!A-Za-z0-9]*:* | *: | *:*[!0-9]* | *:0*) ;;
*)
    if [ "$fill_mib" -le 1024 ]; then
        mkdir -p /mnt/fill
        mount -t tmpfs -o size=$((fill_mib + 1))m tmpfs /mnt/fill
        yes "$fill_word" | head -c $((fill_mib * 1048576)) >/mnt/fill/pattern
        echo "VINFRA-GUEST FILLED $fill_word"
    fi
    ;;
esac
case $dirty in
'' | 0 | *[!0-9]*) ;;
*)
    mkdir -p /mnt/dirty
    mount -t tmpfs -o size=$((dirty + 1))m tmpfs /mnt/dirty
    sh -c "while :; do dd if=/dev/zero of=/mnt/dirty/mem bs=1M count=$dirty conv=notrunc 2>/dev/null; done" &
    renice -n 19 -p $! >/dev/null
    echo "VINFRA-GUEST DIRTY $dirty MiB"
    ;;
esac
if [ "$burn" = 1 ]; then
    sh -c 'while :; do :; done' &
    echo "VINFRA-GUEST BURN"
fi
if [ -n "$ping_target" ]; then
    (
        while :; do
            if out=$(ping -c 1 -W 1 "$ping_target" 2>/dev/null); then
                ttl=$(echo "$out" | sed -n 's/.* ttl=\([0-9]*\).*/\1/p' | head -n 1)
                echo "VINFRA-PING $ping_target ok ttl=${ttl:--}"
            else
                echo "VINFRA-PING $ping_target fail"
            fi
            sleep 1
        done
    ) &
fi
if [ -n "$pingfast" ]; then
    pf_target=${pingfast%%,*}
    pf_ms=20
    case $pingfast in *,*) pf_ms=${pingfast#*,} ;; esac
    case $pf_ms in
    '' | *[!0-9]* | 0 | 0*)
        echo "vinfra-guest: bad vinfra.pingfast interval '$pf_ms' (1 to 60000 ms), using 20"
        pf_ms=20
        ;;
    esac
    [ "$pf_ms" -le 60000 ] || pf_ms=60000
    pf_interval=$((pf_ms / 1000)).$(printf %03d $((pf_ms % 1000)))
    (
        while :; do
            ping -i "$pf_interval" "$pf_target" 2>&1
            echo "VINFRA-PINGFAST-RESTART"
            sleep 1
        done | awk -v target="$pf_target" -v ms="$pf_ms" -f /etc/pinggap.awk
    ) &
fi
case $tick in
'' | 0 | *[!0-9]*) ;;
*)
    [ "$tick" -le 1000 ] || tick=1000
    # A read that times out on a FIFO nobody writes: a sleep without a fork.
    mkfifo /tmp/tick.fifo
    tick_s=$((tick / 1000)).$(printf %03d $((tick % 1000)))
    (
        exec 3<>/tmp/tick.fifo
        t=0
        while :; do
            t=$((t + 1))
            read -r tup _ </proc/uptime
            echo "VINFRA-TICK $t $tup"
            read -r -t "$tick_s" _ <&3
        done
    ) &
    ;;
esac
if [ "$shell" = 1 ]; then
    stty -F /dev/ttyS1 -echo 2>/dev/null
    (while :; do sh </dev/ttyS1 >/dev/ttyS1 2>&1; sleep 1; done) &
    echo "VINFRA-GUEST SHELL ttyS1"
fi
# Lines typed on the serial console (the web console's terminal) are answered on it.
(
    while :; do
        while read -r line; do
            echo "VINFRA-TYPED $line"
        done </dev/ttyS0
        sleep 1
    done
) &
n=0
while true; do
    n=$((n + 1))
    read -r up _ </proc/uptime
    echo "VINFRA-COUNTER $n $up $(date +%s)"
    sleep 0.5
done
EOF
chmod 755 "$ROOT/init"

(cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet | gzip -9) >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
echo "$KVER" >"$WORK/VERSION"
echo "$BUILD_ID" >"$WORK/.build-id"
for f in vmlinuz initrd.img VERSION .build-id; do
    mv -f "$WORK/$f" "$OUTDIR/$f"
done
echo "built guest image for $KVER in $OUTDIR"
