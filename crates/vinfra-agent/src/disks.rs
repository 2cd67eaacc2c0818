//! VM disks: qcow2 files in the shared datastore, `<datastore>/vms/<id>/<disk>.qcow2`, each an
//! overlay of a base image in `<datastore>/images/` or a blank disk; kernels and initrds in
//! `<datastore>/images/` too.
//!
//! One call answers what a VM boots from and its disks ([`BootMedia`]): [`Datastore::prepare`]
//! for a create (missing disks created), [`Datastore::media`] for a start or an incoming
//! migration (everything must exist).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use uuid::Uuid;
use vinfra_types::{BootSource, DiskSpec, VmSpec};

use crate::qemu::{CacheMode, DiskArg};

/// Errors creating or finding disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// a base image, kernel or initrd is not in the datastore
    #[error("missing in the datastore: {0}")]
    Missing(PathBuf),
    /// a name would leave the datastore
    #[error("'{0}' is not a valid file name in the datastore")]
    BadName(String),
    /// qemu-img could not be run
    #[error("cannot run qemu-img {what}")]
    QemuImgSpawn {
        /// The subcommand.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// qemu-img failed
    #[error("qemu-img {what} failed: {stderr}")]
    QemuImg {
        /// The subcommand.
        what: &'static str,
        /// Its message.
        stderr: String,
    },
    /// `qemu-img info` printed no image format
    #[error("qemu-img info printed no image format")]
    QemuImgInfo(#[source] Option<serde_json::Error>),
    /// a base image is not one a VM's disk may stand on
    #[error("base image {path}: {why}")]
    BadBase {
        /// The image.
        path: PathBuf,
        /// Why: its format, or a backing file of its own.
        why: String,
    },
    /// a datastore path resolves to a file outside the datastore
    #[error("{} leads outside the datastore (to {})", path.display(), target.display())]
    OutsideDatastore {
        /// The path in the datastore.
        path: PathBuf,
        /// Where it resolves.
        target: PathBuf,
    },
    /// a VM's directory or disk in the datastore is not a plain directory or file
    #[error("{} is not a plain {what} (a symbolic link or another kind of file)", path.display())]
    NotPlain {
        /// The path.
        path: PathBuf,
        /// `directory` or `file`.
        what: &'static str,
    },
    /// a file system operation failed
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A direct kernel boot: the kernel, the initrd if any, the kernel command line.
pub type KernelBoot = (PathBuf, Option<PathBuf>, String);

/// What a VM boots from and its disks, as files of the datastore: what its QEMU is launched
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMedia {
    /// Direct kernel boot; `None` boots from the first disk.
    pub kernel: Option<KernelBoot>,
    /// The disks in the specification's order, each with the cache mode its file allows.
    pub disks: Vec<DiskArg>,
}

/// What [`Datastore::prepare`] made ready for a new VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Its boot files and disks.
    pub media: BootMedia,
    /// Its datastore directory was made now: a create that fails removes it again
    /// ([`Datastore::delete_vm`]).
    pub new_dir: bool,
}

/// The datastore layout.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// Its root directory.
    pub root: PathBuf,
}

impl Datastore {
    /// `<root>/images/<file>`, after checking `file` is a plain file name.
    pub fn image(&self, file: &str) -> Result<PathBuf, DiskError> {
        vinfra_types::validate_file_name(file).map_err(|_| DiskError::BadName(file.into()))?;
        Ok(self.root.join("images").join(file))
    }

    /// `<root>/vms/<id>`.
    pub fn vm_dir(&self, id: Uuid) -> PathBuf {
        self.root.join("vms").join(id.to_string())
    }

    /// Checks that `path` (which exists) resolves inside the datastore: a link to a file of
    /// the datastore is fine (`images/current.qcow2` → `debian-12.qcow2`), one to anywhere
    /// else is refused, whatever the datastore's own root is a link to.
    fn inside(&self, path: &Path) -> Result<PathBuf, DiskError> {
        let root = self.root.canonicalize().map_err(io(&self.root))?;
        let target = path.canonicalize().map_err(io(path))?;
        if target.starts_with(&root) {
            Ok(target)
        } else {
            Err(DiskError::OutsideDatastore {
                path: path.to_path_buf(),
                target,
            })
        }
    }

    /// Checks that VM `id`'s directory, when it exists, is a plain directory inside the
    /// datastore (not a link: the agent makes and owns what is in it, as root).
    fn check_vm_dir(&self, id: Uuid) -> Result<(), DiskError> {
        let dir = self.vm_dir(id);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => self.inside(&dir).map(drop),
            Ok(_) => Err(DiskError::NotPlain {
                path: dir,
                what: "directory",
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // `vms/` itself, if it is there, must not lead out either.
                let vms = self.root.join("vms");
                if vms.exists() {
                    self.inside(&vms)?;
                }
                Ok(())
            }
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// `<root>/vms/<id>/<disk>.qcow2`, after checking the disk name.
    pub fn disk_path(&self, id: Uuid, disk: &str) -> Result<PathBuf, DiskError> {
        vinfra_types::validate_name(disk).map_err(|_| DiskError::BadName(disk.into()))?;
        Ok(self.vm_dir(id).join(format!("{disk}.qcow2")))
    }

    /// What VM `id` of `spec` boots from and its disks, creating the disks that do not exist
    /// yet (a create). Everything is checked before anything is created (kernel and initrd
    /// first, then the disks' names and base images); on failure what was created is removed.
    pub fn prepare(&self, id: Uuid, spec: &VmSpec) -> Result<Prepared, DiskError> {
        let kernel = self.kernel(spec)?;
        let dir = self.vm_dir(id);
        let mut plan = Vec::new();
        for d in &spec.disks {
            let path = self.disk_path(id, &d.name)?;
            // The base and its format, checked before anything is created.
            let base = d
                .image
                .as_deref()
                .map(|i| {
                    // The overlay names where the base is, not the link to it: QEMU opens
                    // the backing file at every start, and a link retargeted later (from
                    // another host of the datastore) must not lead it elsewhere.
                    let p = self.inside(&self.existing_image(i)?)?;
                    let format = image_format(&p)?;
                    Ok::<_, DiskError>((p, format))
                })
                .transpose()?;
            plan.push((d, path, base));
        }
        self.check_vm_dir(id)?;
        let dir_existed = dir.exists();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if !dir_existed {
            // Root's alone until the VM's QEMU is confined (`confine::Confiner::prepare`).
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io(&dir))?;
        }
        let mut created = Vec::new();
        for (d, path, base) in &plan {
            if path.exists() {
                continue;
            }
            let made = create_disk(d, path, base.as_ref()).and_then(|()| {
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(io(path))
            });
            if let Err(e) = made {
                for p in &created {
                    let _ = std::fs::remove_file(p);
                }
                let _ = std::fs::remove_file(path);
                if !dir_existed {
                    let _ = std::fs::remove_dir(&dir);
                }
                return Err(e);
            }
            created.push(path.clone());
        }
        let disks = plan
            .into_iter()
            .map(|(_, path, _)| disk_arg(path))
            .collect();
        Ok(Prepared {
            media: BootMedia { kernel, disks },
            new_dir: !dir_existed,
        })
    }

    /// What VM `id` of `spec` boots from and its disks, each of which must exist (a start, an
    /// incoming migration: nothing is created).
    pub fn media(&self, id: Uuid, spec: &VmSpec) -> Result<BootMedia, DiskError> {
        let kernel = self.kernel(spec)?;
        self.check_vm_dir(id)?;
        let disks = spec
            .disks
            .iter()
            .map(|d| {
                let p = self.disk_path(id, &d.name)?;
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_file() => Ok(disk_arg(p)),
                    Ok(_) => Err(DiskError::NotPlain {
                        path: p,
                        what: "file",
                    }),
                    Err(_) => Err(DiskError::Missing(p)),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(BootMedia { kernel, disks })
    }

    /// The kernel, initrd and command line of a direct kernel boot, the files checked to exist.
    fn kernel(&self, spec: &VmSpec) -> Result<Option<KernelBoot>, DiskError> {
        let BootSource::Kernel {
            kernel,
            initrd,
            cmdline,
        } = &spec.boot
        else {
            return Ok(None);
        };
        Ok(Some((
            self.existing_image(kernel)?,
            initrd
                .as_deref()
                .map(|i| self.existing_image(i))
                .transpose()?,
            cmdline.clone(),
        )))
    }

    /// An existing datastore file for `file` (resolving inside the datastore), or
    /// [`DiskError::Missing`].
    fn existing_image(&self, file: &str) -> Result<PathBuf, DiskError> {
        let p = self.image(file)?;
        if p.is_file() {
            self.inside(&p)?;
            Ok(p)
        } else {
            Err(DiskError::Missing(p))
        }
    }

    /// Deletes the VM's datastore directory and its disks.
    pub fn delete_vm(&self, id: Uuid) -> Result<(), DiskError> {
        let dir = self.vm_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

fn qemu_img(what: &'static str, args: &[&std::ffi::OsStr]) -> Result<String, DiskError> {
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DiskError::QemuImgSpawn { what, source })?;
    if !out.status.success() {
        return Err(DiskError::QemuImg {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The formats a base image may have.
const BASE_FORMATS: [&str; 2] = ["qcow2", "raw"];

/// The format (`qcow2` or `raw`) of base image `path`, as `qemu-img info` reports it, checked:
/// another format, or a base with a backing file of its own (a chain that could lead out of
/// the datastore's `images/`: flatten it with `qemu-img convert`), is refused. The VM's disk
/// then names this format explicitly (`-F`), so nothing probes the base again.
pub fn image_format(path: &Path) -> Result<String, DiskError> {
    let out = qemu_img(
        "info",
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-U".as_ref(),
            path.as_os_str(),
        ],
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| DiskError::QemuImgInfo(Some(e)))?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .map(str::to_string)
        .ok_or(DiskError::QemuImgInfo(None))?;
    let bad = |why: String| DiskError::BadBase {
        path: path.to_path_buf(),
        why,
    };
    if !BASE_FORMATS.contains(&format.as_str()) {
        return Err(bad(format!(
            "format {format} (qcow2 or raw only: convert it with qemu-img convert)"
        )));
    }
    if let Some(backing) = v.get("backing-filename").and_then(|b| b.as_str()) {
        return Err(bad(format!(
            "it stands on {backing} (flatten it with qemu-img convert)"
        )));
    }
    Ok(format)
}

fn create_disk(
    d: &DiskSpec,
    path: &Path,
    base: Option<&(PathBuf, String)>,
) -> Result<(), DiskError> {
    let size = d.size_gib.map(|g| format!("{g}G"));
    let mut args: Vec<std::ffi::OsString> =
        vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
    if let Some((base, fmt)) = base {
        args.extend([
            "-b".into(),
            base.as_os_str().to_owned(),
            "-F".into(),
            fmt.into(),
        ]);
    }
    args.push(path.as_os_str().to_owned());
    if let Some(size) = size {
        args.push(size.into());
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    qemu_img("create", &refs).map(drop)
}

/// A disk on the command line: `path` with the cache mode its file system allows.
fn disk_arg(path: PathBuf) -> DiskArg {
    let cache = cache_mode_for(&path);
    DiskArg { path, cache }
}

/// `cache=none` when `path` can be opened with O_DIRECT, else `writeback` (e.g. on tmpfs).
pub fn cache_mode_for(path: &Path) -> CacheMode {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(_) => CacheMode::None,
        Err(e) => {
            tracing::info!(
                "{}: no O_DIRECT ({e}); using cache=writeback",
                path.display()
            );
            CacheMode::Writeback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(disks: Vec<DiskSpec>) -> VmSpec {
        VmSpec {
            name: "a".into(),
            vcpus: 1,
            memory_mib: 64,
            boot: BootSource::Disk,
            disks,
            nics: vec![],
            ha: Default::default(),
        }
    }

    #[test]
    fn a_base_image_that_stands_on_another_is_refused_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore {
            root: dir.path().to_path_buf(),
        };
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        let outside = dir.path().join("secret.raw");
        std::fs::write(&outside, vec![0u8; 1 << 20]).unwrap();
        // A qcow2 in `images/` whose backing file lies outside it.
        let chained = images.join("chained.qcow2");
        qemu_img(
            "create",
            &[
                "create".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                "-b".as_ref(),
                outside.as_os_str(),
                "-F".as_ref(),
                "raw".as_ref(),
                chained.as_os_str(),
            ],
        )
        .unwrap();
        let id = Uuid::new_v4();
        let s = spec(vec![DiskSpec {
            name: "root".into(),
            image: Some("chained.qcow2".into()),
            size_gib: None,
        }]);
        let err = ds.prepare(id, &s).unwrap_err();
        assert!(matches!(err, DiskError::BadBase { .. }), "{err}");
        assert!(err.to_string().contains("secret.raw"), "{err}");
        assert!(!ds.vm_dir(id).exists());
    }

    /// Links that lead out of the datastore are refused: a base image, the VM's directory, a
    /// disk; a link within the datastore is fine for an image.
    #[test]
    fn links_out_of_the_datastore_are_refused() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ds");
        let ds = Datastore { root: root.clone() };
        let images = root.join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(root.join("vms")).unwrap();
        let outside = dir.path().join("elsewhere.raw");
        std::fs::write(&outside, vec![0u8; 1 << 20]).unwrap();
        std::fs::write(images.join("base.raw"), vec![0u8; 1 << 20]).unwrap();
        symlink(&outside, images.join("escape.raw")).unwrap();
        symlink(images.join("base.raw"), images.join("current.raw")).unwrap();
        let with_base = |image: &str| {
            spec(vec![DiskSpec {
                name: "root".into(),
                image: Some(image.into()),
                size_gib: None,
            }])
        };
        let id = Uuid::new_v4();
        let err = ds.prepare(id, &with_base("escape.raw")).unwrap_err();
        assert!(matches!(err, DiskError::OutsideDatastore { .. }), "{err}");
        assert!(!ds.vm_dir(id).exists());
        ds.prepare(id, &with_base("current.raw")).unwrap();
        ds.media(id, &with_base("current.raw")).unwrap();
        // The overlay names the base itself, not the link: retargeting the link later does not
        // move the disk's backing file.
        let disk = ds.disk_path(id, "root").unwrap();
        let info = qemu_img(
            "info",
            &[
                "info".as_ref(),
                "-U".as_ref(),
                "--output=json".as_ref(),
                disk.as_os_str(),
            ],
        )
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        let backing = info["backing-filename"].as_str().unwrap_or_default();
        assert!(backing.ends_with("images/base.raw"), "{info}");

        // The disk swapped for a link: refused at the next start.
        std::fs::remove_file(&disk).unwrap();
        symlink(&outside, &disk).unwrap();
        let err = ds.media(id, &with_base("current.raw")).unwrap_err();
        assert!(matches!(err, DiskError::NotPlain { .. }), "{err}");

        // A VM directory that is a link elsewhere: refused, nothing made there.
        let other = Uuid::new_v4();
        let away = dir.path().join("away");
        std::fs::create_dir_all(&away).unwrap();
        symlink(&away, ds.vm_dir(other)).unwrap();
        let err = ds.prepare(other, &with_base("base.raw")).unwrap_err();
        assert!(matches!(err, DiskError::NotPlain { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&away).unwrap().count(), 0);
        let err = ds.media(other, &spec(vec![])).unwrap_err();
        assert!(matches!(err, DiskError::NotPlain { .. }), "{err}");

        // A datastore whose root is itself a link works as usual.
        let alias = dir.path().join("alias");
        symlink(&root, &alias).unwrap();
        let aliased = Datastore { root: alias };
        aliased.media(id, &spec(vec![])).unwrap();
        aliased
            .prepare(Uuid::new_v4(), &with_base("current.raw"))
            .unwrap();
    }

    #[test]
    fn overlays_blank_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore {
            root: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let base = dir.path().join("images/base.raw");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let id = Uuid::new_v4();
        let s = spec(vec![
            DiskSpec {
                name: "root".into(),
                image: Some("base.raw".into()),
                size_gib: None,
            },
            DiskSpec {
                name: "data".into(),
                image: None,
                size_gib: Some(2),
            },
        ]);
        // Missing from the datastore: nothing to start from.
        assert!(matches!(ds.media(id, &s), Err(DiskError::Missing(_))));
        let prepared = ds.prepare(id, &s).unwrap();
        assert!(prepared.new_dir);
        assert_eq!(prepared.media.kernel, None);
        let paths: Vec<PathBuf> = prepared
            .media
            .disks
            .iter()
            .map(|d| d.path.clone())
            .collect();
        assert_eq!(
            paths,
            [
                ds.vm_dir(id).join("root.qcow2"),
                ds.vm_dir(id).join("data.qcow2")
            ]
        );
        // A blank qcow2 is a base; an overlay is not (it stands on another image).
        assert_eq!(image_format(&paths[1]).unwrap(), "qcow2");
        assert!(matches!(
            image_format(&paths[0]),
            Err(DiskError::BadBase { .. })
        ));
        let info = qemu_img(
            "info",
            &[
                "info".as_ref(),
                "--output=json".as_ref(),
                paths[0].as_os_str(),
            ],
        )
        .unwrap();
        assert!(info.contains("base.raw"), "{info}");
        assert!(
            info.contains("\"backing-filename-format\": \"raw\""),
            "{info}"
        );
        // Idempotent, and what a start finds.
        let again = ds.prepare(id, &s).unwrap();
        assert!(!again.new_dir);
        assert_eq!(again.media, prepared.media);
        assert_eq!(ds.media(id, &s).unwrap(), prepared.media);
        assert_eq!(prepared.media.disks[0].cache, CacheMode::None);

        // A direct kernel boot: the kernel and initrd must be there, checked before any disk is
        // created.
        let mut booted = s.clone();
        booted.boot = BootSource::Kernel {
            kernel: "vmlinuz".into(),
            initrd: Some("initrd.img".into()),
            cmdline: "console=ttyS0".into(),
        };
        let id3 = Uuid::new_v4();
        assert!(matches!(
            ds.prepare(id3, &booted),
            Err(DiskError::Missing(_))
        ));
        assert!(!ds.vm_dir(id3).exists());
        std::fs::write(dir.path().join("images/vmlinuz"), b"k").unwrap();
        std::fs::write(dir.path().join("images/initrd.img"), b"i").unwrap();
        assert_eq!(
            ds.media(id, &booted).unwrap().kernel,
            Some((
                dir.path().join("images/vmlinuz"),
                Some(dir.path().join("images/initrd.img")),
                "console=ttyS0".to_string()
            ))
        );

        // A missing base image fails before anything is created.
        let id2 = Uuid::new_v4();
        let bad = spec(vec![
            DiskSpec {
                name: "data".into(),
                image: None,
                size_gib: Some(1),
            },
            DiskSpec {
                name: "root".into(),
                image: Some("nope.qcow2".into()),
                size_gib: None,
            },
        ]);
        assert!(matches!(ds.prepare(id2, &bad), Err(DiskError::Missing(_))));
        assert!(!ds.vm_dir(id2).exists());
        // qemu-img failing (size too large for qcow2) leaves nothing behind either.
        let huge = spec(vec![
            DiskSpec {
                name: "data".into(),
                image: None,
                size_gib: Some(1),
            },
            DiskSpec {
                name: "big".into(),
                image: None,
                size_gib: Some(u64::MAX / 4),
            },
        ]);
        assert!(matches!(
            ds.prepare(id2, &huge),
            Err(DiskError::QemuImg { .. })
        ));
        assert!(!ds.vm_dir(id2).exists());
        // Names that would leave the datastore are refused.
        assert!(matches!(
            ds.image("../etc/passwd"),
            Err(DiskError::BadName(_))
        ));
        assert!(matches!(
            ds.disk_path(id, "../x"),
            Err(DiskError::BadName(_))
        ));

        ds.delete_vm(id).unwrap();
        assert!(!ds.vm_dir(id).exists());
        ds.delete_vm(id).unwrap();
    }
}
