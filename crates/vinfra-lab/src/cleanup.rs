//! Taking a lab down from whatever is left of it: its processes (from pidfiles and `/proc`),
//! its QEMUs, its cgroups, its namespaces and its root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::STOP_GRACE;
use crate::error::{io, LabError};
use crate::{net, process, upstream};

/// True when `pid` is a process of the lab at `root`: a vinfra console, agent, switch or guard, or
/// a QEMU, whose command line mentions `root`.
pub(crate) fn is_lab_process(pid: u32, root: &Path) -> bool {
    let Some(cmd) = process::cmdline(pid) else {
        return false;
    };
    let needle = format!("{}/", root.display());
    if !cmd.contains(&needle) {
        return false;
    }
    let mut args = cmd.split(' ');
    let argv0 = args.next().unwrap_or_default();
    let base = argv0.rsplit('/').next().unwrap_or_default();
    base.starts_with("qemu")
        || matches!(args.next(), Some("console" | "agent" | "switch" | "guard"))
}

pub(crate) fn is_qemu(pid: u32) -> bool {
    process::cmdline(pid).is_some_and(|c| {
        let argv0 = c.split(' ').next().unwrap_or_default();
        argv0
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .starts_with("qemu")
    })
}

/// Pids of every QEMU process on the machine (of any lab or none) whose command line contains
/// `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<u32> {
    process::pids_mentioning(needle)
        .into_iter()
        .filter(|pid| is_qemu(*pid))
        .collect()
}

/// Pidfiles of QEMUs under `root/hosts/*/vms/*/`.
pub(crate) fn qemu_pidfiles(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(hosts) = std::fs::read_dir(root.join("hosts")) else {
        return files;
    };
    for host in hosts.flatten() {
        let Ok(vms) = std::fs::read_dir(host.path().join("vms")) else {
            continue;
        };
        for vm in vms.flatten() {
            let Ok(entries) = std::fs::read_dir(vm.path()) else {
                continue;
            };
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pid")),
            );
        }
    }
    files.sort();
    files
}

/// The cgroup under which lab `lab`'s host `host` keeps its VMs' cgroups (its agent's
/// `--cgroup-parent`): each lab its own, so that labs side by side never sweep each other's.
pub fn cgroup_parent(lab: &str, host: &str) -> PathBuf {
    Path::new("vinfra.slice")
        .join(format!("lab-{lab}"))
        .join(host)
}

/// Removes lab `lab`'s VM cgroups that no process is in any more, then its hosts' and its own
/// cgroups left empty (the lab's agents are gone before their last sweep).
pub(crate) fn remove_empty_vm_cgroups(lab: &str) {
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
    ] {
        let dir = Path::new(root)
            .join("vinfra.slice")
            .join(format!("lab-{lab}"));
        let Ok(hosts) = std::fs::read_dir(&dir) else {
            continue;
        };
        for host in hosts.flatten().filter(|h| h.path().is_dir()) {
            if let Ok(vms) = std::fs::read_dir(host.path()) {
                for vm in vms.flatten().filter(|v| v.path().is_dir()) {
                    let _ = std::fs::remove_dir(vm.path());
                }
            }
            let _ = std::fs::remove_dir(host.path());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Stops every process of lab `name` at `root`, deletes its namespaces and, with
/// `remove_root`, removes `root`. Works from whatever is left: pidfiles, `/proc`, `/run/netns`.
pub(crate) fn cleanup(name: &str, root: &Path, remove_root: bool) -> Result<(), LabError> {
    let mut first: Option<LabError> = None;
    let mut note = |r: Result<(), LabError>| {
        if let Err(e) = r {
            tracing::warn!(error = %vinfra_types::error::Chain(&e), "lab cleanup");
            first.get_or_insert(e);
        }
    };
    // The console first (so that it orders nothing more), then the agents, their switches, their
    // guards (their QEMUs die with them), then any QEMU left.
    let mut pidfiles = vec![root.join("console.pid"), root.join("phys/switch.pid")];
    if let Ok(hosts) = std::fs::read_dir(root.join("hosts")) {
        let hosts: Vec<PathBuf> = hosts.flatten().map(|h| h.path()).collect();
        pidfiles.extend(hosts.iter().map(|h| h.join("agent.pid")));
        pidfiles.extend(hosts.iter().map(|h| h.join("switch.pid")));
        pidfiles.extend(hosts.iter().map(|h| h.join("guard.pid")));
    }
    for pidfile in &pidfiles {
        if let Some(pid) = process::read_pidfile(pidfile) {
            if process::alive(pid) && is_lab_process(pid, root) {
                note(process::terminate(pid, STOP_GRACE).map_err(LabError::from));
            }
        }
    }
    for pidfile in qemu_pidfiles(root) {
        if let Some(pid) = process::read_pidfile(&pidfile) {
            if process::alive(pid) && is_qemu(pid) {
                note(process::signal(pid, Signal::SIGKILL).map_err(LabError::from));
                process::wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
    for pid in process::pids_mentioning(&format!("{}/", root.display())) {
        if is_lab_process(pid, root) {
            note(process::signal(pid, Signal::SIGKILL).map_err(LabError::from));
            process::wait_gone(pid, Duration::from_secs(5));
        }
    }
    remove_empty_vm_cgroups(name);
    // The upstream router's and the internet's namespaces hold nothing but the lab's.
    note(upstream::stop(name).map_err(LabError::from));
    note(net::destroy(name).map_err(LabError::from));
    if remove_root && root.exists() {
        note(std::fs::remove_dir_all(root).map_err(io("cannot remove", root)));
    }
    first.map_or(Ok(()), Err)
}
