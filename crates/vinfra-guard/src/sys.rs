//! The unsafe part: what a child does between fork and exec so that it dies with the guard.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command`'s child, between fork and exec: leave the guard's session (`setsid`: a
/// terminal's signals to the guard do not reach it), ask the kernel for SIGKILL when its parent
/// goes (`PR_SET_PDEATHSIG`), then check that its parent is still `guard_pid`: a guard that died
/// between the fork and the `prctl` would send no signal, so the child exits at once instead.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits: the command must be spawned
/// from a thread that lives as long as the guard.
pub fn die_with_guard(command: &mut Command, guard_pid: u32) {
    let guard_pid = guard_pid as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it calls setsid, prctl, getppid and _exit, and builds an io::Error from
    // a raw errno (no allocation). It touches no lock and no memory shared with the guard.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
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
            if libc::getppid() != guard_pid {
                libc::_exit(127);
            }
            Ok(())
        })
    };
}
