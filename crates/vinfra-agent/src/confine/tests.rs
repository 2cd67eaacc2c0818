use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use vinfra_testenv::Needs;

use super::*;

fn confiner(serial_log_max: u64) -> Confiner {
    Confiner {
        settings: ConfineSettings {
            serial_log_max,
            ..ConfineSettings::default()
        },
        cgroups: None,
        kvm_gid: None,
    }
}

#[test]
fn limits_cover_the_guest_and_qemu_and_weigh_by_vcpus() {
    let kvm = CgroupLimits::for_vm(1024, 2, Accel::Kvm);
    assert_eq!(kvm.memory_bytes, (1024 + 256 + 64) << 20);
    assert_eq!(kvm.cpu_weight, 200);
    let tcg = CgroupLimits::for_vm(1024, 2, Accel::Tcg);
    assert_eq!(tcg.memory_bytes, kvm.memory_bytes + (512 << 20));
    assert_eq!(
        CgroupLimits::for_vm(128, 256, Accel::Kvm).cpu_weight,
        10_000
    );
}

#[test]
fn each_slot_has_a_user_of_its_own_within_the_range() {
    let c = confiner(1);
    assert_eq!(c.uid(0).unwrap(), DEFAULT_UID_BASE);
    assert_eq!(c.uid(7).unwrap(), DEFAULT_UID_BASE + 7);
    assert!(matches!(
        c.uid(SLOTS),
        Err(ConfineError::SlotOutOfRange { .. })
    ));
    let top = Confiner {
        settings: ConfineSettings {
            uid_base: u32::MAX - 3,
            ..ConfineSettings::default()
        },
        ..confiner(1)
    };
    assert!(top.uid(2).is_ok());
    assert!(top.uid(3).is_err(), "user -1 means none");
}

#[test]
fn a_cgroup_parent_is_a_relative_path_of_plain_names() {
    for bad in ["/vinfra.slice", "../up", "a/../b", ""] {
        let settings = ConfineSettings {
            cgroup_parent: PathBuf::from(bad),
            ..ConfineSettings::default()
        };
        assert!(
            matches!(Confiner::new(settings), Err(ConfineError::CgroupParent(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn a_serial_log_past_its_limit_rotates_and_its_writer_goes_on_at_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let files = VmFiles {
        dir: tmp.path().to_path_buf(),
    };
    std::fs::create_dir(files.run_dir()).unwrap();
    let uid = std::fs::metadata(tmp.path()).unwrap().uid();
    // Opened as QEMU opens it (`append=on`).
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.serial_log())
        .unwrap();
    writer.write_all(&[b'a'; 100]).unwrap();
    let c = confiner(100);
    assert!(!c.rotate_serial_log(&files, uid).unwrap(), "at the limit");
    writer.write_all(b"bc").unwrap();
    assert!(c.rotate_serial_log(&files, uid).unwrap());
    let rotated = std::fs::read(files.serial_log_rotated()).unwrap();
    // Its last 100 bytes.
    assert_eq!(rotated.len(), 100);
    assert!(rotated.ends_with(b"abc") && rotated.starts_with(b"aa"));
    writer.write_all(b"after").unwrap();
    assert_eq!(std::fs::read(files.serial_log()).unwrap(), b"after");
    // Another user's file is refused.
    assert!(matches!(
        c.rotate_serial_log(&files, uid + 1),
        Err(ConfineError::Unexpected { .. })
    ));
}

#[test]
fn a_serial_log_that_is_a_link_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let files = VmFiles {
        dir: tmp.path().to_path_buf(),
    };
    std::fs::create_dir(files.run_dir()).unwrap();
    let uid = std::fs::metadata(tmp.path()).unwrap().uid();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, vec![b'x'; 1000]).unwrap();
    std::os::unix::fs::symlink(&victim, files.serial_log()).unwrap();
    let c = confiner(10);
    assert!(c.rotate_serial_log(&files, uid).is_err());
    assert_eq!(std::fs::read(&victim).unwrap().len(), 1000, "not truncated");
    // Nor is a link ever followed to change owners or modes.
    let before = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert!(matches!(
        own(&files.serial_log(), uid, uid, 0o777, false),
        Err(ConfineError::Unexpected { .. })
    ));
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode(),
        before
    );
    // A second name of another file (a hard link) neither.
    std::fs::remove_file(files.serial_log()).unwrap();
    std::fs::hard_link(&victim, files.serial_log()).unwrap();
    assert!(matches!(
        c.rotate_serial_log(&files, uid),
        Err(ConfineError::Unexpected { .. })
    ));
    assert_eq!(std::fs::read(&victim).unwrap().len(), 1000, "not truncated");
}

#[test]
fn prepare_gives_the_vm_its_files_and_refuses_a_disk_that_is_a_link() {
    if !Needs::new().root().met() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = VmFiles {
        dir: tmp.path().join("agent/vms/a"),
    };
    std::fs::create_dir_all(&files.dir).unwrap();
    let ds = tmp.path().join("ds/vms/a");
    std::fs::create_dir_all(&ds).unwrap();
    let disk = ds.join("root.qcow2");
    std::fs::write(&disk, b"disk").unwrap();
    let c = confiner(1);
    let id = Uuid::new_v4();
    assert!(matches!(
        c.prepare(
            id,
            None,
            &files,
            &ds,
            &[],
            CgroupLimits::for_vm(64, 1, Accel::Tcg)
        ),
        Err(ConfineError::NoSlot(_))
    ));
    let got = c
        .prepare(
            id,
            Some(5),
            &files,
            &ds,
            std::slice::from_ref(&disk),
            CgroupLimits::for_vm(64, 1, Accel::Tcg),
        )
        .unwrap();
    let user = DEFAULT_UID_BASE + 5;
    assert_eq!((got.uid, got.gid), (user, user));
    let check = |path: &Path, uid: u32, mode: u32| {
        let m = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (uid, user, mode),
            "{}",
            path.display()
        );
    };
    check(&files.dir, 0, 0o710);
    check(&files.run_dir(), user, 0o700);
    check(&ds, 0, 0o710);
    check(&disk, user, 0o600);
    // A disk replaced by a link to another file: refused, the file left as it was.
    let other = tmp.path().join("other.qcow2");
    std::fs::write(&other, b"other").unwrap();
    std::fs::remove_file(&disk).unwrap();
    std::os::unix::fs::symlink(&other, &disk).unwrap();
    let err = c
        .prepare(
            id,
            Some(5),
            &files,
            &ds,
            std::slice::from_ref(&disk),
            CgroupLimits::for_vm(64, 1, Accel::Tcg),
        )
        .unwrap_err();
    assert!(matches!(err, ConfineError::Unexpected { .. }), "{err}");
    assert_eq!(std::fs::metadata(&other).unwrap().uid(), 0);
}
