//! Liveness in the lab: a VM whose QEMU stops answering (SIGSTOP) holds up neither its host's
//! heartbeats nor its reports: the host stays connected throughout, the VM shows as unresponsive
//! with its last known state, and it is reported as usual once QEMU runs again.

mod common;

use std::time::{Duration, Instant};

use common::{api, boot_guest, can_run_labs, qemus_with, start_lab, vm, wait_for};
use nix::sys::signal::Signal;
use vinfra_types::{HostStatus, PowerState};

/// How long the QEMU stays stopped.
const STOPPED: Duration = Duration::from_secs(15);

/// Sends SIGCONT to the QEMU on drop, so a failing test leaves no stopped process behind.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = vinfra_agent::qemu::kill(self.0, Signal::SIGCONT);
    }
}

#[test]
fn a_stopped_qemu_leaves_its_host_connected_and_its_vm_unresponsive() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("heartbeat", 1);
    let guest = boot_guest(&lab, "frozen", 128, Some("h1"));
    let id = guest.id.to_string();
    let pids = qemus_with(&id);
    assert_eq!(pids.len(), 1, "one QEMU for the guest: {pids:?}");
    wait_for(
        "the guest to be reported running",
        Duration::from_secs(30),
        || {
            let v = vm(&lab, "frozen");
            (v.state == PowerState::Running && !v.unresponsive).then_some(())
        },
    );

    vinfra_agent::qemu::kill(pids[0], Signal::SIGSTOP).expect("SIGSTOP");
    let resume = Resume(pids[0]);
    let stopped = Instant::now();
    let mut unresponsive_after = None;
    let mut polls = 0;
    while stopped.elapsed() < STOPPED {
        let hosts = api(&lab).hosts().expect("GET /hosts");
        let h1 = hosts.iter().find(|h| h.name == "h1").expect("h1 listed");
        assert_eq!(
            h1.status,
            HostStatus::Connected,
            "h1 {:?} after its VM's QEMU stopped",
            stopped.elapsed()
        );
        if unresponsive_after.is_none() {
            let v = vm(&lab, "frozen");
            if v.unresponsive {
                assert_eq!(v.state, PowerState::Running, "the last known state");
                unresponsive_after = Some(stopped.elapsed());
            }
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let unresponsive_after = unresponsive_after.expect("the VM never showed as unresponsive");
    // A report every 2 s, each waiting 2 s at most on the QEMU.
    assert!(
        unresponsive_after < Duration::from_secs(8),
        "unresponsive only after {unresponsive_after:?}"
    );
    // Still so at the end: its observation waits on.
    assert!(
        vm(&lab, "frozen").unresponsive,
        "unresponsive while stopped"
    );

    drop(resume);
    let resumed = Instant::now();
    wait_for("the VM to answer again", Duration::from_secs(30), || {
        let v = vm(&lab, "frozen");
        (v.state == PowerState::Running && !v.unresponsive).then_some(())
    });
    let back_after = resumed.elapsed();
    assert_eq!(
        api(&lab).host("h1").expect("GET host").status,
        HostStatus::Connected
    );
    eprintln!(
        "h1 connected through {polls} polls over {STOPPED:?}; the VM unresponsive after \
         {unresponsive_after:?}, normal again {back_after:?} after SIGCONT"
    );
    lab.down();
}
