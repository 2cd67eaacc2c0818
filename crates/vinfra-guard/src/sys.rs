//! The unsafe part: what a QEMU does between fork and exec: leave the parent's session, join
//! its cgroups, become its own unprivileged user, and die with the guard that started it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::protocol::Confinement;

/// Makes `command`'s child, with a `confinement`, start with an empty environment, and,
/// between fork and exec, in this order:
/// 1. leave the parent's session (`setsid`: a terminal's signals to the parent do not reach it);
/// 2. join `confinement`'s cgroups (writes `0`, itself, to each one's [`join_file`]), while it
///    is still root;
/// 3. become `confinement`'s user and group, with only its supplementary groups and no way
///    back to privileges (`PR_SET_NO_NEW_PRIVS`);
/// 4. with `parent`, ask for SIGKILL when the parent goes (`PR_SET_PDEATHSIG`, after the change
///    of user, which clears it) and exit at once when the parent is gone already: a parent that
///    died between the fork and the `prctl` would send no signal;
/// 5. with `no_huge_pages`, give up transparent huge pages (`PR_SET_THP_DISABLE`, kept across
///    the exec): every mapping of the child, its `MADV_HUGEPAGE` ones too, in base pages.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits: with `parent`, the command
/// must be spawned from a thread that lives as long as the parent.
///
/// Refuses a confinement to user or group 0 and a cgroup path with a NUL byte.
pub fn start_child(
    command: &mut Command,
    confinement: Option<&Confinement>,
    parent: Option<u32>,
    no_huge_pages: bool,
) -> io::Result<()> {
    let mut procs: Vec<CString> = Vec::new();
    let mut ids = None;
    if let Some(c) = confinement {
        if c.uid == 0 || c.gid == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a confined child does not run as user or group 0",
            ));
        }
        for dir in &c.cgroups {
            let path = dir.join(join_file(dir));
            procs.push(CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cgroup path {} has a NUL byte", path.display()),
                )
            })?);
        }
        if c.groups.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a confined child is not in group 0",
            ));
        }
        ids = Some((
            c.uid as libc::uid_t,
            c.gid as libc::gid_t,
            c.groups
                .iter()
                .map(|g| *g as libc::gid_t)
                .collect::<Vec<_>>(),
        ));
    }
    if confinement.is_some() {
        // Nothing of its parent's environment (a join token, say) reaches a confined QEMU.
        command.env_clear();
    }
    let parent = parent.map(|p| p as libc::pid_t);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: setsid, open, write, close, setgroups, setresgid, setresuid, prctl,
    // getppid and _exit, on memory prepared before the fork (`procs`, `ids`, moved in) and
    // never freed in the child; `groups` is a valid array of its length for setgroups. It
    // builds io::Errors from raw errnos (no allocation) and touches no lock. The forked child
    // has one thread, so a v1 `tasks` write of `0` moves all of it.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let failed = (written != 1).then(io::Error::last_os_error);
                libc::close(fd);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            if let Some((uid, gid, groups)) = &ids {
                let (uid, gid) = (*uid, *gid);
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                    || libc::setresgid(gid, gid, gid) < 0
                    || libc::setresuid(uid, uid, uid) < 0
                    || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(parent) = parent {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(127);
                }
            }
            if no_huge_pages && libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    Ok(())
}

/// The file of cgroup `dir` that a forked child, single-threaded until its exec, writes `0` to
/// join it: `tasks` on a cgroup v1 hierarchy, `cgroup.procs` on v2.
///
/// `cgroup.procs` moves a whole thread group, under the kernel's global threadgroup lock,
/// whose every write-lock waits for an RCU grace period unless the hierarchy is mounted with
/// `favordynmods` (which v1 cannot be given on remount): 5–20 ms measured on a loaded lab host,
/// on the path of every VM's start. `tasks` with `0` moves the writing thread alone, which
/// the kernel does without that lock (`cgroup_procs_write_start`: a single thread that is the
/// writer cannot exit or exec meanwhile): 0.4 ms, and for a child that has one thread, the
/// same move. v2 has no such file for a domain cgroup (`cgroup.threads` cannot leave its
/// domain): there, `cgroup.procs`.
fn join_file(dir: &std::path::Path) -> &'static str {
    if dir.join("tasks").exists() {
        "tasks"
    } else {
        "cgroup.procs"
    }
}
