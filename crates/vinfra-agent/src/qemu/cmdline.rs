//! The QEMU command line for a VM (pure: no I/O).

use std::ffi::OsString;
use std::path::PathBuf;

use uuid::Uuid;
use vinfra_types::vm::HOST_CPU_MODEL;
use vinfra_types::{Accel, VmPlatform};

/// Host page-cache use of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// `cache=none` (O_DIRECT): what shared storage and migration want.
    None,
    /// `cache=writeback`: for file systems without O_DIRECT (tmpfs).
    Writeback,
}

/// One disk on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskArg {
    /// The qcow2 file.
    pub path: PathBuf,
    /// Cache mode.
    pub cache: CacheMode,
}

/// One NIC: a virtio-net device on a tap the host's switch created (`-netdev tap`), or on a
/// `-netdev dgram` pair of Unix sockets to the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicArg {
    /// MAC address.
    pub mac: String,
    /// IP MTU offered to the guest (`host_mtu`).
    pub mtu: u16,
    /// The socket QEMU binds (`local.path`).
    pub qemu_socket: PathBuf,
    /// The switch's socket (`remote.path`).
    pub switch_socket: PathBuf,
    /// The tap QEMU opens instead of the sockets (`ifname`), with virtio-net headers: the
    /// guest's offloads go through.
    pub tap: Option<String>,
    /// Turn the guest's UDP segmentation offload off (`host_uso=off`, QEMU 8.2 and later; see
    /// [`super::process::virtio_net_offers_uso`]).
    pub uso_off: bool,
    /// It carries 802.1Q sub-interfaces: the device takes every tag (`ctrl_vlan=off`). With
    /// the guest-programmed VLAN filter on, QEMU resets the filter when it loads a migrated
    /// device's features, and the destination would drop every tagged frame; the host's switch
    /// delivers only the NIC's tags anyway. Off only for such NICs, so that the device of
    /// every other NIC stays as it was (both ends of a migration must agree on it).
    pub trunk: bool,
}

/// Everything needed to start one QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// VM id (`-uuid`).
    pub id: Uuid,
    /// VM name (`-name`).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Give the guest [`RAM_PAD_KIB`] of memory over `memory_mib` (see [`ram_size`]): for a
    /// QEMU that loses a guest's writes in a migration under TCG.
    pub pad_ram: bool,
    /// Accelerator.
    pub accel: Accel,
    /// CPU model and machine type; `None`: `q35` and, under KVM, the host's CPU.
    pub platform: Option<VmPlatform>,
    /// Direct kernel boot: kernel, initrd, command line. `None` boots from the first disk.
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    /// Disks, in order.
    pub disks: Vec<DiskArg>,
    /// Serial console log file: everything the guest prints on its serial port.
    pub serial_log: PathBuf,
    /// The serial port's Unix socket (QEMU listens): what a client writes there is typed on
    /// the port ([`crate::manager::Manager::console_write`]).
    pub serial_socket: PathBuf,
    /// QMP unix socket (the agent's).
    pub qmp_socket: PathBuf,
    /// A second QMP unix socket, for the host's guard or the agent's start: a monitor serves
    /// one client at a time, and the agent keeps its connection to `qmp_socket`, so readiness
    /// checks and the guard's isolation response (`system_powerdown`) need their own.
    pub guard_qmp_socket: PathBuf,
    /// The pidfile the agent or the guard writes once QEMU is spawned (QEMU does not: it could
    /// not write in the VM's directory).
    pub pidfile: PathBuf,
    /// The user, group and cgroups QEMU runs as and in; `None`: as the agent
    /// (`vinfra agent --unconfined`).
    pub confinement: Option<vinfra_guard::Confinement>,
    /// QEMU's standard output and error (appended to).
    pub log: PathBuf,
    /// Wait for an incoming migration (`-incoming defer`).
    pub incoming: bool,
    /// NICs, in order.
    pub nics: Vec<NicArg>,
}

/// Whether a QEMU with `accel` keeps transparent huge pages for its memory (QEMU asks for them
/// on guest RAM, `MADV_HUGEPAGE`): under KVM yes, the guest's memory is mapped by the CPU's
/// nested page tables, which huge pages make shallower and cheaper to miss in; under TCG no
/// (the QEMU spawned with `PR_SET_THP_DISABLE`): its guest reaches memory through QEMU's own
/// software TLB (the lab's test guest ran as fast without them and booted 0.9–1.2 s sooner:
/// the same zeroing at first touch), while huge pages cost an incoming migration dearly: the first write to each 2-MiB region of guest RAM zeroes the
/// whole huge page, so a destination zeroes all of a guest whose memory is mostly zero pages
/// (the stream skips those) and the copy waits on it (90% of a destination QEMU's time in the
/// kernel's `clear_page`, 256 MiB zeroed for 92 MiB of data in a 256-MiB guest's migration on
/// the lab's machines; docs/benchmarks.md). In base pages only the pages written are.
pub fn huge_pages(accel: Accel) -> bool {
    accel == Accel::Kvm
}

/// Guest memory added by [`Launch::pad_ram`], KiB: the least QEMU keeps (it rounds `-m` up to
/// 8 KiB).
pub const RAM_PAD_KIB: u64 = 8;

/// QEMU's `-m` for `memory_mib`, padded by [`RAM_PAD_KIB`] when `pad`.
///
/// Why pad: under TCG, QEMU before 9.0 loses writes a guest makes during a live migration
/// (design.md, "Live migration"). When it syncs the migration's dirty bitmap, a RAM block whose
/// length is a multiple of 64 pages (256 KiB, every size in whole MiB) takes a fast path that
/// clears the bitmap a word at a time without resetting the TCG TLB entries that let stores skip
/// dirty tracking, so a page the guest writes again through such an entry is not sent again. A
/// length off that multiple takes the page-by-page path, which resets them (QEMU 9.0 added the
/// reset to the fast path). Measured on QEMU 7.2 (`vinfra.dirty=32`, 128 MiB, migrated back and
/// forth between two QEMUs on one machine): a guest broken on arrival in 6 of 29 migrations at
/// `128M`, in none of 26 at `131080k`. The cost, a slower sync, is in docs/benchmarks.md. Both ends
/// of a migration must agree (QEMU refuses RAM blocks of different sizes), so `pad` follows the
/// QEMU version alone, the same on every host that runs the same QEMU.
pub fn ram_size(memory_mib: u64, pad: bool) -> String {
    if pad {
        format!("{}k", memory_mib * 1024 + RAM_PAD_KIB)
    } else {
        format!("{memory_mib}M")
    }
}

/// QEMU's seccomp sandbox (`-sandbox`).
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// QEMU's command line for `l` (without the binary). Option values that are paths are passed as
/// separate arguments where QEMU allows it; commas in paths are escaped (`,,`).
pub fn build_args(l: &Launch) -> Vec<OsString> {
    let accel = match l.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: String| a.push(s.into());
    push("-name".into());
    push(format!("{},debug-threads=on", esc(&l.name)));
    push("-uuid".into());
    push(l.id.to_string());
    // Versioned machine type and named CPU model: the same virtual hardware on every host
    // the VM runs on (a migration needs it).
    let (machine, cpu) = match &l.platform {
        Some(p) => (p.machine_type.as_str(), Some(p.cpu_model.as_str())),
        None => ("q35", (l.accel == Accel::Kvm).then_some(HOST_CPU_MODEL)),
    };
    push("-machine".into());
    push(format!("{},accel={accel}", esc(machine)));
    if let Some(cpu) = cpu {
        push("-cpu".into());
        // A named model with every feature it names, or no start (not silently less).
        push(if cpu == HOST_CPU_MODEL {
            cpu.to_string()
        } else {
            format!("{},enforce", esc(cpu))
        });
    }
    push("-smp".into());
    push(l.vcpus.to_string());
    push("-m".into());
    push(ram_size(l.memory_mib, l.pad_ram));
    for s in ["-nodefaults", "-no-user-config", "-display", "none"] {
        push(s.into());
    }
    // The serial port on a socket that takes input (one client at a time; nothing waits for
    // one), everything the guest prints also appended to the log, with a client or without.
    push("-chardev".into());
    push(format!(
        "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
        esc_path(&l.serial_socket),
        esc_path(&l.serial_log)
    ));
    push("-serial".into());
    push("chardev:serial0".into());
    push("-qmp".into());
    push(format!(
        "unix:{},server=on,wait=off",
        esc_path(&l.qmp_socket)
    ));
    // After the agent's: once this one accepts, the agent's does too.
    push("-qmp".into());
    push(format!(
        "unix:{},server=on,wait=off",
        esc_path(&l.guard_qmp_socket)
    ));
    // The system calls QEMU never needs once it runs are refused by its seccomp filter:
    // obsolete ones, gaining privileges (set*uid), spawning processes, changing its
    // scheduling or CPU affinity.
    push("-sandbox".into());
    push(SANDBOX.into());
    if let Some((kernel, initrd, cmdline)) = &l.kernel {
        push("-kernel".into());
        push(kernel.to_string_lossy().into_owned());
        if let Some(initrd) = initrd {
            push("-initrd".into());
            push(initrd.to_string_lossy().into_owned());
        }
        push("-append".into());
        push(cmdline.clone());
    }
    // Each disk is a virtio-blk device of its own; without a kernel the first disk gets
    // `bootindex=1`, so the firmware (SeaBIOS) boots it.
    for (i, d) in l.disks.iter().enumerate() {
        let cache = match d.cache {
            CacheMode::None => "none",
            CacheMode::Writeback => "writeback",
        };
        push("-drive".into());
        push(format!(
            "if=none,id=drive{i},format=qcow2,file={},cache={cache}",
            esc_path(&d.path)
        ));
        push("-device".into());
        let boot = if i == 0 && l.kernel.is_none() {
            ",bootindex=1"
        } else {
            ""
        };
        push(format!("virtio-blk-pci,drive=drive{i},id=disk{i}{boot}"));
    }
    for (i, n) in l.nics.iter().enumerate() {
        push("-netdev".into());
        push(match &n.tap {
            Some(tap) => format!(
                "tap,id=nic{i},ifname={},script=no,downscript=no,vnet_hdr=on",
                esc(tap)
            ),
            None => format!(
                "dgram,id=nic{i},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                esc_path(&n.qemu_socket),
                esc_path(&n.switch_socket)
            ),
        });
        push("-device".into());
        push(format!(
            "virtio-net-pci,netdev=nic{i},id=net{i},mac={},host_mtu={}{}{}",
            esc(&n.mac),
            n.mtu,
            if n.trunk { ",ctrl_vlan=off" } else { "" },
            if n.uso_off { ",host_uso=off" } else { "" }
        ));
    }
    push("-device".into());
    push("virtio-balloon-pci,id=balloon0".into());
    if l.incoming {
        push("-incoming".into());
        push("defer".into());
    }
    a
}

fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

fn esc_path(p: &std::path::Path) -> String {
    esc(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            id: Uuid::nil(),
            name: "web-1".into(),
            vcpus: 2,
            memory_mib: 128,
            pad_ram: false,
            accel: Accel::Tcg,
            platform: None,
            kernel: Some((
                "/ds/images/k".into(),
                Some("/ds/images/i".into()),
                "console=ttyS0".into(),
            )),
            disks: vec![DiskArg {
                path: "/ds/vms/x/a,b.qcow2".into(),
                cache: CacheMode::None,
            }],
            serial_log: "/d/serial.log".into(),
            serial_socket: "/d/serial.sock".into(),
            qmp_socket: "/d/qmp.sock".into(),
            guard_qmp_socket: "/d/guard-qmp.sock".into(),
            pidfile: "/d/qemu.pid".into(),
            confinement: None,
            log: "/d/qemu.log".into(),
            incoming: true,
            nics: vec![NicArg {
                mac: "52:54:00:00:00:01".into(),
                mtu: 1450,
                qemu_socket: "/d/nic0.sock".into(),
                switch_socket: "/d/nic0.switch.sock".into(),
                tap: None,
                uso_off: false,
                trunk: false,
            }],
        }
    }

    #[test]
    fn a_nic_on_a_tap_opens_it_by_name_with_virtio_net_headers() {
        let mut l = launch();
        l.nics[0].tap = Some("vn1a2bp7".into());
        l.nics[0].uso_off = true;
        let joined = build_args(&l)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains(
                "-netdev tap,id=nic0,ifname=vn1a2bp7,script=no,downscript=no,vnet_hdr=on \
                 -device virtio-net-pci,netdev=nic0,id=net0,mac=52:54:00:00:00:01,host_mtu=1450,\
                 host_uso=off"
            ),
            "{joined}"
        );
        assert!(!joined.contains("dgram"), "{joined}");
    }

    #[test]
    fn a_trunk_nic_takes_every_tag() {
        let mut l = launch();
        l.nics[0].trunk = true;
        let joined = build_args(&l)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains("mac=52:54:00:00:00:01,host_mtu=1450,ctrl_vlan=off"),
            "{joined}"
        );
    }

    #[test]
    fn the_vms_machine_type_and_cpu_model_are_on_the_command_line() {
        let joined = |l: &Launch| {
            build_args(l)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut l = launch();
        l.platform = Some(VmPlatform {
            cpu_model: "Nehalem-v1".into(),
            machine_type: "pc-q35-7.1".into(),
        });
        let j = joined(&l);
        assert!(
            j.contains("-machine pc-q35-7.1,accel=tcg -cpu Nehalem-v1,enforce -smp 2"),
            "{j}"
        );
        // Under KVM without a platform: q35 with the host's CPU; a comma cannot add options.
        l.accel = Accel::Kvm;
        l.platform = None;
        assert!(joined(&l).contains("-machine q35,accel=kvm -cpu host -smp"));
        l.platform = Some(VmPlatform {
            cpu_model: "qemu64,+avx".into(),
            machine_type: "pc-q35-7.2".into(),
        });
        assert!(joined(&l).contains("-cpu qemu64,,+avx,enforce -smp"));
    }

    #[test]
    fn padded_ram_is_off_the_fast_path_multiple() {
        assert_eq!(ram_size(128, false), "128M");
        assert_eq!(ram_size(128, true), "131080k");
        let mut l = launch();
        l.pad_ram = true;
        let j = build_args(&l)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(j.contains("-smp 2 -m 131080k "), "{j}");
        // Not a multiple of 64 pages of 4 KiB.
        assert_ne!((128 * 1024 + RAM_PAD_KIB) % 256, 0);
    }

    #[test]
    fn command_line() {
        let args: Vec<String> = build_args(&launch())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains("-machine q35,accel=tcg -smp 2 -m 128M"),
            "{joined}"
        );
        assert!(
            joined.contains("-qmp unix:/d/qmp.sock,server=on,wait=off"),
            "{joined}"
        );
        assert!(
            joined.contains("file=/ds/vms/x/a,,b.qcow2,cache=none"),
            "{joined}"
        );
        assert!(joined.contains("-append console=ttyS0"), "{joined}");
        assert!(
            joined.contains("if=none,id=drive0,format=qcow2,file=/ds/vms/x/a,,b.qcow2"),
            "{joined}"
        );
        assert!(
            joined.contains("-device virtio-blk-pci,drive=drive0,id=disk0 ")
                && !joined.contains("bootindex"),
            "a kernel boot gives no disk a boot index: {joined}"
        );
        assert!(joined.ends_with("-incoming defer"), "{joined}");
        assert!(
            joined.contains(
                "-netdev dgram,id=nic0,local.type=unix,local.path=/d/nic0.sock,\
                 remote.type=unix,remote.path=/d/nic0.switch.sock \
                 -device virtio-net-pci,netdev=nic0,id=net0,mac=52:54:00:00:00:01,host_mtu=1450"
            ),
            "{joined}"
        );
        assert!(!joined.contains("-cpu host"));
        assert!(
            !joined.contains("-pidfile") && !joined.contains("-daemonize"),
            "QEMU stays in the foreground and writes no pidfile: {joined}"
        );
        assert!(
            joined.contains(
                "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ),
            "{joined}"
        );
        let mut l = launch();
        l.accel = Accel::Kvm;
        l.incoming = false;
        l.kernel = None;
        let joined: Vec<String> = build_args(&l)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = joined.join(" ");
        assert!(joined.contains("accel=kvm -cpu host"));
        assert!(!joined.contains("-incoming") && !joined.contains("-kernel"));
        // A second monitor, for the guard, after the agent's.
        assert!(
            joined.contains(
                "-qmp unix:/d/qmp.sock,server=on,wait=off \
                 -qmp unix:/d/guard-qmp.sock,server=on,wait=off"
            ),
            "{joined}"
        );
        // Booting from disk: the first disk carries the boot index.
        assert!(
            joined.contains("-device virtio-blk-pci,drive=drive0,id=disk0,bootindex=1"),
            "{joined}"
        );
    }
}
