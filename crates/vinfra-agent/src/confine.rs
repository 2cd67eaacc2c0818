//! Confining each VM's QEMU (docs/threat-model.md, "Confined QEMU"): a user and group of its
//! own, `uid base + slot` (the console's [`vinfra_proto::VmInstance::slot`], the same on every
//! host, so a migrated VM's disks stay its own), files only it can open, and cgroups of its
//! own under the host's vinfra slice with a memory limit and a CPU weight. The agent prepares
//! all of it as root before each start ([`Confiner::prepare`]); the process that spawns QEMU
//! joins the cgroups and drops to the user between fork and exec
//! ([`vinfra_guard::start_child`]); QEMU's own seccomp sandbox does the rest
//! ([`crate::qemu::cmdline::SANDBOX`]).
//!
//! Ownership, for VM `v` with user and group `u`:
//! - `<data_dir>/vms/<v>/`: root, group `u`, 0710 (the agent's record, the pidfile, QEMU's
//!   output, the switch's sockets: QEMU may only pass through);
//! - `<data_dir>/vms/<v>/run/`: `u`, 0700 (QEMU's QMP sockets, serial log, NIC sockets);
//! - `<datastore>/vms/<v>/`: root, group `u`, 0710; its disks `u`, 0600. Base images and
//!   kernels stay as the operator made them (they must be readable by all: QEMU opens them
//!   read-only).
//!
//! - `<data_dir>/vms/<v>/migration-tls/`: root, group `u`, 0710, for the moment a migration's
//!   credentials are read (files root, group `u`, 0640; [`MigrationTlsFiles`]).
//!
//! Nothing here follows a symbolic link: QEMU may have put one in its `run/` directory.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;
use vinfra_guard::Confinement;
use vinfra_types::Accel;

use crate::qemu::VmFiles;

/// The first user of VMs' QEMUs by default: VM slot `n` runs as `n` above it.
pub const DEFAULT_UID_BASE: u32 = 0x4000_0000;
/// How many slots a base covers (users `base` to `base + 2^28 - 1`).
pub const SLOTS: u32 = 1 << 28;
/// The serial log's size past which it is rotated, by default.
pub const DEFAULT_SERIAL_LOG_MAX: u64 = 8 << 20;
/// The cgroup (below each hierarchy's root) that holds the VMs' cgroups, by default.
pub const DEFAULT_CGROUP_PARENT: &str = "vinfra.slice";
/// How often the agent removes the cgroups of ended QEMUs and rotates serial logs.
pub const TEND_INTERVAL: Duration = Duration::from_secs(10);
/// How old an empty VM cgroup must be before a round removes it: a VM's cgroup is made empty
/// just before its QEMU is spawned, which joins it before it executes (within milliseconds).
pub const SWEEP_MIN_AGE: Duration = Duration::from_secs(30);
/// QEMU's own memory on top of the guest's, in the cgroup's limit: its code, device models,
/// I/O buffers, and under TCG its translation cache.
const OVERHEAD_MIB: u64 = 256;
/// Added to [`OVERHEAD_MIB`] under TCG (the translation cache grows to hundreds of MiB).
const TCG_OVERHEAD_MIB: u64 = 512;

/// How the agent confines QEMUs (`vinfra agent --vm-uid-base`, `--cgroup-parent`,
/// `--serial-log-max`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfineSettings {
    /// VM slot `n`'s QEMU runs as user and group `uid_base + n`.
    pub uid_base: u32,
    /// The cgroup, relative to each hierarchy's root, under which each VM gets
    /// `vm-<id>` (the lab gives each host its own).
    pub cgroup_parent: PathBuf,
    /// Size past which a serial log is rotated.
    pub serial_log_max: u64,
}

impl Default for ConfineSettings {
    fn default() -> Self {
        ConfineSettings {
            uid_base: DEFAULT_UID_BASE,
            cgroup_parent: PathBuf::from(DEFAULT_CGROUP_PARENT),
            serial_log_max: DEFAULT_SERIAL_LOG_MAX,
        }
    }
}

/// Why a VM's QEMU could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The console gave the VM no slot (a console from before slots).
    #[error(
        "VM {0} has no slot from the console, so it has no user to run as (upgrade the console)"
    )]
    NoSlot(Uuid),
    /// The slot is past the range of users.
    #[error("VM slot {slot} is past the {SLOTS} users above {base}")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The base.
        base: u32,
    },
    /// The cgroup parent is not a relative path of plain names.
    #[error("cgroup parent {0} is not a relative path of plain names")]
    CgroupParent(PathBuf),
    /// A file or directory is not what it must be (a link, a device, another owner's).
    #[error("{path} is not a plain file or directory of the VM's (refused: {what})")]
    Unexpected {
        /// The path.
        path: PathBuf,
        /// What was found.
        what: &'static str,
    },
    /// A file operation failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfineError + '_ {
    move |source| ConfineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the host's cgroup hierarchies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 with the memory and cpu controllers (`/sys/fs/cgroup`).
    Unified(PathBuf),
    /// cgroup v1: the memory and the cpu hierarchies (`/sys/fs/cgroup/memory`, `…/cpu`).
    Legacy {
        /// The memory hierarchy.
        memory: PathBuf,
        /// The cpu hierarchy.
        cpu: PathBuf,
    },
}

impl CgroupLayout {
    /// The layout under `mount` (`/sys/fs/cgroup`): v2 when its root offers the memory and cpu
    /// controllers, else v1 when both hierarchies are mounted, else none.
    pub fn detect(mount: &Path) -> Option<CgroupLayout> {
        if let Ok(controllers) = std::fs::read_to_string(mount.join("cgroup.controllers")) {
            let has = |c| controllers.split_whitespace().any(|x| x == c);
            if has("memory") && has("cpu") {
                return Some(CgroupLayout::Unified(mount.to_path_buf()));
            }
        }
        let (memory, cpu) = (mount.join("memory"), mount.join("cpu"));
        (memory.join("memory.limit_in_bytes").exists() && cpu.join("cpu.shares").exists())
            .then_some(CgroupLayout::Legacy { memory, cpu })
    }

    /// The roots of the hierarchies a VM's cgroups live in.
    fn roots(&self) -> Vec<&Path> {
        match self {
            CgroupLayout::Unified(root) => vec![root],
            CgroupLayout::Legacy { memory, cpu } => vec![memory, cpu],
        }
    }

    /// Makes VM `id`'s cgroups under `parent` (reused when they exist) with `limits`; returns
    /// their directories.
    pub fn create(
        &self,
        parent: &Path,
        id: Uuid,
        limits: CgroupLimits,
    ) -> Result<Vec<PathBuf>, ConfineError> {
        let name = format!("vm-{id}");
        match self {
            CgroupLayout::Unified(root) => {
                // Each level down to the parent hands the controllers on.
                let mut dir = root.clone();
                for part in parent.components() {
                    write(&dir.join("cgroup.subtree_control"), "+memory +cpu")?;
                    dir.push(part);
                    mkdir(&dir)?;
                }
                write(&dir.join("cgroup.subtree_control"), "+memory +cpu")?;
                let vm = dir.join(name);
                fresh(&vm)?;
                write(&vm.join("memory.max"), &limits.memory_bytes.to_string())?;
                write(&vm.join("memory.swap.max"), "0").or_else(|e| match &e {
                    // Without swap accounting there is no such file.
                    ConfineError::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(())
                    }
                    _ => Err(e),
                })?;
                write(&vm.join("cpu.weight"), &limits.cpu_weight.to_string())?;
                Ok(vec![vm])
            }
            CgroupLayout::Legacy { memory, cpu } => {
                let m = memory.join(parent).join(&name);
                mkdir_all(&memory.join(parent))?;
                fresh(&m)?;
                write(
                    &m.join("memory.limit_in_bytes"),
                    &limits.memory_bytes.to_string(),
                )?;
                let c = cpu.join(parent).join(&name);
                mkdir_all(&cpu.join(parent))?;
                fresh(&c)?;
                // v1 shares: 1024 is v2's weight 100.
                write(
                    &c.join("cpu.shares"),
                    &(u64::from(limits.cpu_weight) * 1024 / 100).to_string(),
                )?;
                Ok(vec![m, c])
            }
        }
    }

    /// Removes the VM cgroups under `parent` that hold no process any more (their QEMU ended)
    /// and were made at least `min_age` ago, but those of the VMs in `keep`: a VM's cgroup is
    /// empty from its making until its QEMU joins it. Returns how many went.
    pub fn sweep(&self, parent: &Path, keep: &HashSet<Uuid>, min_age: Duration) -> usize {
        let mut removed = 0;
        for root in self.roots() {
            let Ok(entries) = std::fs::read_dir(root.join(parent)) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name();
                let is_vm = name
                    .to_string_lossy()
                    .strip_prefix("vm-")
                    .is_some_and(|id| Uuid::parse_str(id).map_or(true, |id| !keep.contains(&id)));
                let old = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= min_age));
                let empty = old
                    && std::fs::read_to_string(path.join("cgroup.procs"))
                        .is_ok_and(|p| p.trim().is_empty());
                if is_vm && empty && std::fs::remove_dir(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A VM cgroup's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Memory, bytes: the guest's plus QEMU's overhead.
    pub memory_bytes: u64,
    /// CPU weight (cgroup v2, 1 to 10,000; 100 is a default process's): 100 per vCPU.
    pub cpu_weight: u32,
}

impl CgroupLimits {
    /// The limits of a VM of `memory_mib` and `vcpus` under `accel`: the guest's memory plus
    /// 256 MiB and 1/16 of it for QEMU (512 MiB more under TCG), 100 of CPU weight per vCPU.
    pub fn for_vm(memory_mib: u64, vcpus: u32, accel: Accel) -> CgroupLimits {
        let tcg = if accel == Accel::Tcg {
            TCG_OVERHEAD_MIB
        } else {
            0
        };
        let mib = memory_mib + OVERHEAD_MIB + memory_mib / 16 + tcg;
        CgroupLimits {
            memory_bytes: mib << 20,
            cpu_weight: vcpus.saturating_mul(100).clamp(1, 10_000),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), ConfineError> {
    std::fs::write(path, value).map_err(io(path))
}

fn mkdir(path: &Path) -> Result<(), ConfineError> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Makes cgroup `path` anew when it exists without a process (so that its age is this
/// start's, see [`CgroupLayout::sweep`]), or keeps it when a process is in it.
fn fresh(path: &Path) -> Result<(), ConfineError> {
    let empty =
        std::fs::read_to_string(path.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
    if empty {
        let _ = std::fs::remove_dir(path);
    }
    mkdir(path)
}

fn mkdir_all(path: &Path) -> Result<(), ConfineError> {
    std::fs::create_dir_all(path).map_err(io(path))
}

/// Opens `path` for the agent without following a link at its end and without blocking (a FIFO
/// QEMU put there opens at once, and is then refused), and checks it is a plain directory
/// (`dir`) or a plain file with one name; what is changed or read afterwards is that open
/// file, never the path again.
pub fn open_plain(path: &Path, dir: bool) -> Result<File, ConfineError> {
    open_checked(path, dir, false)
}

/// [`open_plain`], also for writing when `write` (a file).
fn open_checked(path: &Path, dir: bool, write: bool) -> Result<File, ConfineError> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | if dir { libc::O_DIRECTORY } else { 0 };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ConfineError::Unexpected {
                path: path.to_path_buf(),
                what: "a symbolic link",
            },
            Some(libc::ENOTDIR) => ConfineError::Unexpected {
                path: path.to_path_buf(),
                what: "not a directory",
            },
            _ => io(path)(e),
        })?;
    let meta = f.metadata().map_err(io(path))?;
    let what = if dir && !meta.is_dir() {
        Some("not a directory")
    } else if !dir && !meta.is_file() {
        Some("not a plain file")
    } else if !dir && meta.nlink() > 1 {
        Some("a file with other names (hard links)")
    } else {
        None
    };
    match what {
        Some(what) => Err(ConfineError::Unexpected {
            path: path.to_path_buf(),
            what,
        }),
        None => Ok(f),
    }
}

/// Sets the owner and mode of `path`, a plain file or directory (`dir`), through an open file
/// ([`open_plain`]): a link or a FIFO put in its place is refused, never followed.
fn own(path: &Path, uid: u32, gid: u32, mode: u32, dir: bool) -> Result<(), ConfineError> {
    let f = open_plain(path, dir)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(path))
}

/// Which end of a migration a QEMU's credentials are for: the file names QEMU's
/// `tls-creds-x509` reads differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsEnd {
    /// The sender (`client-cert.pem`, `client-key.pem`).
    Source,
    /// The receiver (`server-cert.pem`, `server-key.pem`).
    Destination,
}

/// The Diffie-Hellman group a destination's QEMU is given (`dh-params.pem`): RFC 7919's
/// `ffdhe2048`, public and standard. Without the file QEMU generates a 2048-bit group at
/// `object-add` (`crypto/tlscreds.c`), which took 0.6 to 3 s of the migration on the lab's
/// machines; TLS 1.3 uses elliptic curves anyway.
pub const FFDHE2048_PEM: &str = "\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// A migration's credentials on disk for the moment QEMU reads them (it does so once, when
/// its `tls-creds-x509` object is made): `ca-cert.pem`, this end's certificate and key and, for
/// a destination, `dh-params.pem` ([`FFDHE2048_PEM`]) in
/// [`VmFiles::migration_tls_dir`], root's, readable by the VM's group alone (by root alone
/// when QEMU is not confined). Removed when dropped.
#[derive(Debug)]
pub struct MigrationTlsFiles {
    dir: PathBuf,
}

impl MigrationTlsFiles {
    /// Writes `tls` for `end` into `files`' credentials directory (anything there before, left
    /// by a crash, goes first), for QEMU's group `gid` (`None`: QEMU runs as root).
    pub fn write(
        files: &VmFiles,
        gid: Option<u32>,
        end: CredentialsEnd,
        tls: &vinfra_proto::MigrationTls,
    ) -> Result<MigrationTlsFiles, ConfineError> {
        let dir = files.migration_tls_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir)(e)),
            _ => {}
        }
        let written = MigrationTlsFiles { dir };
        let dir = &written.dir;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let (dir_mode, file_mode) = match gid {
            Some(_) => (0o710, 0o640),
            None => (0o700, 0o600),
        };
        let prefix = match end {
            CredentialsEnd::Source => "client",
            CredentialsEnd::Destination => "server",
        };
        let mut files = vec![
            ("ca-cert.pem".to_string(), tls.ca_pem.as_str()),
            (format!("{prefix}-cert.pem"), tls.cert_pem.as_str()),
            (format!("{prefix}-key.pem"), tls.key_pem.as_str()),
        ];
        if end == CredentialsEnd::Destination {
            files.push(("dh-params.pem".to_string(), FFDHE2048_PEM));
        }
        for (name, text) in files {
            let path = dir.join(name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io(&path))?;
            f.write_all(text.as_bytes()).map_err(io(&path))?;
            if let Some(gid) = gid {
                std::os::unix::fs::fchown(&f, Some(0), Some(gid)).map_err(io(&path))?;
            }
            f.set_permissions(std::fs::Permissions::from_mode(file_mode))
                .map_err(io(&path))?;
        }
        own(dir, 0, gid.unwrap_or(0), dir_mode, true)?;
        Ok(written)
    }

    /// The directory QEMU reads them from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MigrationTlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the agent confines QEMUs with: its settings and the host's cgroups.
#[derive(Debug, Clone)]
pub struct Confiner {
    settings: ConfineSettings,
    cgroups: Option<CgroupLayout>,
    /// The group owning `/dev/kvm` when it is not root's: each QEMU's one supplementary group.
    kvm_gid: Option<u32>,
}

impl Confiner {
    /// A confiner with `settings`, on the cgroups found under `/sys/fs/cgroup` (without
    /// any, QEMUs run without cgroups of their own, which the agent logs).
    pub fn new(settings: ConfineSettings) -> Result<Confiner, ConfineError> {
        let plain = settings
            .cgroup_parent
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || settings.cgroup_parent.as_os_str().is_empty() {
            return Err(ConfineError::CgroupParent(settings.cgroup_parent.clone()));
        }
        let cgroups = CgroupLayout::detect(Path::new("/sys/fs/cgroup"));
        if cgroups.is_none() {
            tracing::warn!(
                "no cgroup memory and cpu controllers under /sys/fs/cgroup: QEMUs run without \
                 memory limits of their own"
            );
        }
        let kvm_gid = std::fs::metadata("/dev/kvm")
            .ok()
            .map(|m| m.gid())
            .filter(|g| *g != 0);
        Ok(Confiner {
            settings,
            cgroups,
            kvm_gid,
        })
    }

    /// Lets every user open `/dev/net/tun` (mode 0666, what Debian's udev gives it; some
    /// hosts have 0600): a confined QEMU opens its NIC's tap there. Opening it grants nothing
    /// by itself: a tap is attached only by its owner or a privileged process.
    pub fn open_tun_to_all(&self) -> Result<(), ConfineError> {
        let tun = Path::new("/dev/net/tun");
        let meta = std::fs::metadata(tun).map_err(io(tun))?;
        if meta.mode() & 0o666 != 0o666 {
            std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666))
                .map_err(io(tun))?;
            tracing::info!("/dev/net/tun opened to all users (mode 0666), for confined QEMUs");
        }
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &ConfineSettings {
        &self.settings
    }

    /// The cgroups found.
    pub fn cgroups(&self) -> Option<&CgroupLayout> {
        self.cgroups.as_ref()
    }

    /// The user (and group) slot `slot`'s QEMU runs as.
    pub fn uid(&self, slot: u32) -> Result<u32, ConfineError> {
        let base = self.settings.uid_base;
        if slot >= SLOTS {
            return Err(ConfineError::SlotOutOfRange { slot, base });
        }
        base.checked_add(slot)
            .filter(|u| *u != u32::MAX)
            .ok_or(ConfineError::SlotOutOfRange { slot, base })
    }

    /// Readies VM `id` (slot `slot`) to start confined: its directories and disks owned as
    /// the module says, its cgroups made with its limits. Returns what its QEMU runs as.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        id: Uuid,
        slot: Option<u32>,
        files: &VmFiles,
        datastore_dir: &Path,
        disks: &[PathBuf],
        limits: CgroupLimits,
    ) -> Result<Confinement, ConfineError> {
        let slot = slot.ok_or(ConfineError::NoSlot(id))?;
        let uid = self.uid(slot)?;
        // Its own group too: a VM's files are shared with no other VM. `/dev/kvm`'s group
        // (0660 root:kvm on Debian) is its one supplementary group.
        let gid = uid;
        own(&files.dir, 0, gid, 0o710, true)?;
        let run = files.run_dir();
        mkdir(&run)?;
        own(&run, uid, gid, 0o700, true)?;
        // A serial log from before `run/` moves in (a QEMU that still writes it keeps doing
        // so: the file is the same).
        let legacy = files.legacy_serial_log();
        if std::fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_file()) {
            std::fs::rename(&legacy, files.serial_log()).map_err(io(&legacy))?;
        }
        let serial = files.serial_log();
        if std::fs::symlink_metadata(&serial).is_ok() {
            own(&serial, uid, gid, 0o600, false)?;
        }
        own(datastore_dir, 0, gid, 0o710, true)?;
        for disk in disks {
            own(disk, uid, gid, 0o600, false)?;
        }
        let cgroups = match &self.cgroups {
            Some(layout) => layout.create(&self.settings.cgroup_parent, id, limits)?,
            None => Vec::new(),
        };
        Ok(Confinement {
            uid,
            gid,
            groups: self.kvm_gid.into_iter().collect(),
            cgroups,
        })
    }

    /// Removes the cgroups of VMs whose QEMU ended, made at least `min_age` ago
    /// ([`SWEEP_MIN_AGE`] in the agent's rounds), but those of the VMs in `keep`.
    pub fn sweep(&self, keep: &HashSet<Uuid>, min_age: Duration) -> usize {
        self.cgroups
            .as_ref()
            .map_or(0, |c| c.sweep(&self.settings.cgroup_parent, keep, min_age))
    }

    /// Rotates VM `files`' serial log once it is past the limit: its last `serial_log_max`
    /// bytes go to `serial.log.1` (replacing the one before) and it is emptied in place, so the QEMU
    /// writing it (with `O_APPEND`) goes on at its start. Opens it without following a link,
    /// and only when it is a plain file of `uid`'s. Returns whether it rotated.
    pub fn rotate_serial_log(&self, files: &VmFiles, uid: u32) -> Result<bool, ConfineError> {
        let path = files.serial_log();
        let mut f = match open_checked(&path, false, true) {
            Ok(f) => f,
            Err(ConfineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let meta = f.metadata().map_err(io(&path))?;
        if meta.uid() != uid {
            return Err(ConfineError::Unexpected {
                path,
                what: "not a plain file of the VM's",
            });
        }
        if meta.len() <= self.settings.serial_log_max {
            return Ok(false);
        }
        let rotated = files.serial_log_rotated();
        let tmp = rotated.with_extension("1.tmp");
        let mut out = File::create(&tmp).map_err(io(&tmp))?;
        // Its last `serial_log_max` bytes: a file QEMU made sparse and huge costs no more.
        let max = self.settings.serial_log_max;
        f.seek(SeekFrom::Start(meta.len() - max))
            .map_err(io(&path))?;
        std::io::copy(&mut (&mut f).take(max), &mut out).map_err(io(&tmp))?;
        out.flush().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &rotated).map_err(io(&rotated))?;
        f.set_len(0).map_err(io(&path))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
