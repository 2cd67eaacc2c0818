//! Each VM's QEMU runs confined (docs/threat-model.md, "Confined QEMU"), seen from outside on
//! a real lab host: its own unprivileged user, a seccomp filter, no new privileges, cgroups of
//! its own with the memory limit, disks only it may open; a deleted VM's cgroups go.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{api, can_run_labs, start_lab, wait_for, BOOT_TIMEOUT};
use vinfra_lab::Lab;
use vinfra_types::{DiskSpec, VmSummary};

/// The guest's memory, MiB.
const MEMORY_MIB: u64 = 128;

/// The value of `field` in `/proc/<pid>/status`.
fn status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"))
        .trim()
        .to_string()
}

/// Creates a lab guest with a blank disk on h1 and waits until it booted.
fn guest_with_disk(lab: &Lab, name: &str) -> VmSummary {
    let mut req = Lab::guest_vm_request(name, MEMORY_MIB, Some("h1"));
    req.spec.disks.push(DiskSpec {
        name: "data".into(),
        image: None,
        size_gib: Some(1),
    });
    let vm = api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", vinfra_types::error::Chain(&e)));
    lab.wait_console(name, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM {name} did not boot: {}", vinfra_types::error::Chain(&e)));
    vm
}

/// The memory cgroup directory of `pid` and its memory limit, bytes: cgroup v2 when the
/// host's unified hierarchy has the memory controller, else v1's memory hierarchy.
fn memory_cgroup(pid: u32) -> (PathBuf, u64) {
    memory_cgroup_at(&format!("/proc/{pid}"))
}

/// [`memory_cgroup`] of the process or thread `/proc` directory `proc_dir`.
fn memory_cgroup_at(proc_dir: &str) -> (PathBuf, u64) {
    let cgroups = std::fs::read_to_string(format!("{proc_dir}/cgroup")).expect("cgroup");
    let unified = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"));
    let (prefix, root, file) = if unified {
        ("0::", "/sys/fs/cgroup", "memory.max")
    } else {
        ("", "/sys/fs/cgroup/memory", "memory.limit_in_bytes")
    };
    let path = cgroups
        .lines()
        .find_map(|l| {
            if unified {
                l.strip_prefix(prefix)
            } else {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then_some(path)
            }
        })
        .unwrap_or_else(|| panic!("no memory cgroup for {proc_dir}: {cgroups}"));
    let dir = Path::new(root).join(path.trim_start_matches('/'));
    let limit = std::fs::read_to_string(dir.join(file))
        .expect("memory limit")
        .trim()
        .parse()
        .expect("a number");
    (dir, limit)
}

/// Whether `uid` (group the same) can read the first byte of `file`: `head` run as that user.
fn can_read_as(uid: u32, file: &Path) -> (bool, String) {
    let out = Command::new("head")
        .args(["-c", "1"])
        .arg(file)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run head");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_vms_qemu_runs_as_its_own_user_in_a_sandbox_and_a_cgroup_and_cannot_open_another_vms_disk() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("confine", 1);
    let a = guest_with_disk(&lab, "cf-a");
    let b = guest_with_disk(&lab, "cf-b");
    let mut users = Vec::new();
    let mut cgroups = Vec::new();
    for vm in [&a, &b] {
        let id = vm.id.to_string();
        let pids = lab.qemu_pids_on("h1", &id).expect("host");
        assert_eq!(pids.len(), 1, "one QEMU for {}: {pids:?}", vm.name);
        let pid = pids[0];
        let uids: Vec<u32> = status(pid, "Uid")
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        let uid = uids[0];
        assert!(
            uid != 0 && uids.iter().all(|u| *u == uid),
            "{}'s QEMU runs as one unprivileged user: {uids:?}",
            vm.name
        );
        assert!(
            status(pid, "Gid")
                .split_whitespace()
                .all(|g| g == uid.to_string()),
            "its group is its own"
        );
        assert_eq!(status(pid, "Seccomp"), "2", "{}: seccomp filter", vm.name);
        assert_eq!(status(pid, "NoNewPrivs"), "1", "{}", vm.name);
        let (dir, limit) = memory_cgroup(pid);
        assert!(
            dir.ends_with(format!("vm-{id}")),
            "{}'s QEMU is in a cgroup of its own: {}",
            vm.name,
            dir.display()
        );
        // Every thread of it: the child joined the cgroups before its exec, alone, so all
        // that QEMU started after is in them too.
        let threads: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("threads")
            .flatten()
            .map(|t| t.path().display().to_string())
            .collect();
        assert!(threads.len() > 1, "{}'s QEMU has its threads", vm.name);
        for t in &threads {
            assert_eq!(
                memory_cgroup_at(t).0,
                dir,
                "thread {t} of {}'s QEMU",
                vm.name
            );
        }
        // The guest's memory, QEMU's 256 MiB and 1/16 of the guest, 512 MiB more under TCG.
        let expected = (MEMORY_MIB + 256 + MEMORY_MIB / 16 + 512) << 20;
        assert_eq!(limit, expected, "{}'s memory limit", vm.name);
        let disk = lab.datastore().join("vms").join(&id).join("data.qcow2");
        let meta = std::fs::metadata(&disk).expect("disk");
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o777),
            (uid, 0o600),
            "{}'s disk is its QEMU's alone",
            disk.display()
        );
        users.push((uid, disk));
        cgroups.push(dir);
    }
    assert_ne!(users[0].0, users[1].0, "two VMs never share a user");
    let (own, _) = can_read_as(users[0].0, &users[0].1);
    assert!(own, "cf-a's user reads its own disk");
    let (other, err) = can_read_as(users[0].0, &users[1].1);
    assert!(
        !other && err.contains("Permission denied"),
        "cf-a's user cannot open cf-b's disk: {err}"
    );

    // A deleted VM's cgroup goes (every 10 s the agent removes the empty ones made at least
    // 30 s ago).
    api(&lab).delete_vm("cf-b", true).expect("delete cf-b");
    wait_for("cf-b's cgroup to go", Duration::from_secs(90), || {
        (!cgroups[1].exists()).then_some(())
    });
    assert!(cgroups[0].exists(), "cf-a's cgroup stays while it runs");
}
