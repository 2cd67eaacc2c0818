//! The guard as a process (this crate's `vinfra-guard` binary, what `vinfra guard` runs) with
//! real children: `socat` listening on a Unix socket stands in for QEMU's QMP socket, and one
//! test runs a real QEMU. Short timings (a renewal every 100 ms, self-fence after 1 s) keep the
//! whole file within seconds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use uuid::Uuid;
use vinfra_guard::renew::{read_lease, temp_path};
use vinfra_guard::{
    lease_path, ChildExit, GuardClient, GuardClientError, GuardRefusal, GuardStatus,
    IsolationResponse, Pet, SpawnSpec,
};
use vinfra_ha::{HaTimings, LeaseObserver, LeaseState, LeaseVerdict};

const GUARD: &str = env!("CARGO_BIN_EXE_vinfra-guard");
const SOCAT: &str = "socat";
const QEMU: &str = "qemu-system-x86_64";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The timings of these tests: everything ten times faster than the defaults, or more.
fn timings() -> HaTimings {
    HaTimings {
        heartbeat: ms(100),
        heartbeat_timeout: ms(300),
        renew: ms(100),
        lease_timeout: ms(2000),
        margin: ms(500),
        self_fence_after: ms(1000),
        agent_grace: ms(1000),
    }
}

/// Whether `socat` (and QEMU when asked) is here: else skipped, or failing under CI.
fn ready(qemu: bool) -> bool {
    let needs = vinfra_testenv::Needs::new().program(SOCAT);
    if qemu {
        needs.program(QEMU).met()
    } else {
        needs.met()
    }
}

/// A guard process for host `host` with its datastore and control socket in `dir`.
struct Guard {
    process: Child,
    control: PathBuf,
    stderr: PathBuf,
}

fn guard_command(dir: &Path, host: &str, control: &Path, t: &HaTimings) -> Command {
    let mut c = Command::new(GUARD);
    let d = |d: Duration| format!("{}ms", d.as_millis());
    c.arg("--host")
        .arg(host)
        .arg("--datastore")
        .arg(dir.join("datastore"))
        .arg("--control")
        .arg(control)
        .args(["--renew", &d(t.renew)])
        .args(["--lease-timeout", &d(t.lease_timeout)])
        .args(["--margin", &d(t.margin)])
        .args(["--self-fence-after", &d(t.self_fence_after)])
        .args(["--agent-grace", &d(t.agent_grace)])
        .args(["--heartbeat", &d(t.heartbeat)])
        .args(["--heartbeat-timeout", &d(t.heartbeat_timeout)])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

impl Guard {
    /// Starts a guard and waits until it answers (it first watches the lease for 700 ms).
    fn start(dir: &Path, host: &str, name: &str) -> Guard {
        Self::start_with(dir, host, name, &[])
    }

    /// [`Guard::start`] with `extra` arguments (`--shutdown-wait 3s`).
    fn start_with(dir: &Path, host: &str, name: &str, extra: &[&str]) -> Guard {
        let control = dir.join(format!("{name}.sock"));
        let stderr = dir.join(format!("{name}.stderr"));
        let process = guard_command(dir, host, &control, &timings())
            .args(extra)
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("start the guard");
        let mut guard = Guard {
            process,
            control,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = GuardClient::connect(&guard.control) {
                if c.status().is_ok() {
                    return guard;
                }
            }
            if let Ok(Some(status)) = guard.process.try_wait() {
                panic!("the guard exited ({status}): {}", guard.log());
            }
            assert!(Instant::now() < deadline, "no guard: {}", guard.log());
            std::thread::sleep(ms(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn client(&self) -> GuardClient {
        let c = GuardClient::connect(&self.control).unwrap();
        c.set_timeout(Some(Duration::from_secs(30))).unwrap();
        c
    }

    fn status(&self) -> GuardStatus {
        self.client().status().unwrap()
    }

    /// `kill -9` the guard and reap it.
    fn kill9(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A child that listens on `<dir>/<vm>.sock` like QEMU's QMP socket.
fn stand_in(dir: &Path, vm: Uuid) -> SpawnSpec {
    let socket = dir.join(format!("{vm}.sock"));
    SpawnSpec {
        vm,
        argv: vec![
            SOCAT.into(),
            format!("UNIX-LISTEN:{},fork,unlink-early", socket.display()),
            "OPEN:/dev/null".into(),
        ],
        qmp_socket: socket,
        pidfile: None,
        log: dir.join(format!("{vm}.log")),
        ready_timeout_ms: 5000,
        confinement: None,
        no_huge_pages: false,
    }
}

/// True while `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Waits until `cond` holds, at most `timeout`; returns when it did (`None`: never).
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(ms(10));
    }
}

/// An agent petting the guard every 100 ms until dropped.
struct Petter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Petter {
    fn start(guard: &Guard, pet: Pet) -> Petter {
        let stop = Arc::new(AtomicBool::new(false));
        let mut client = guard.client();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                client.pet(&pet).unwrap();
                std::thread::sleep(ms(100));
            }
        });
        Petter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Petter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pet(contact: Option<u64>, ha_vms: Vec<Uuid>, response: IsolationResponse) -> Pet {
    Pet {
        console_contact_age_ms: contact,
        ha_vms,
        isolation_response: response,
        timings: timings(),
    }
}

fn vms(n: u128) -> Vec<Uuid> {
    (1..=n).map(|i| Uuid::from_u128(i << 64 | i)).collect()
}

/// The `THP_enabled` line of process `pid`'s status: 1 while it may have transparent huge
/// pages, 0 once it gave them up.
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no THP_enabled in /proc/{pid}/status"))
}

#[test]
fn a_child_spawned_without_huge_pages_has_them_off_and_others_keep_the_guards() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let vms = vms(2);
    let with = c.spawn(&stand_in(dir.path(), vms[0])).unwrap();
    let without = c
        .spawn(&SpawnSpec {
            no_huge_pages: true,
            ..stand_in(dir.path(), vms[1])
        })
        .unwrap();
    // The other child as the guard (as this test, which started it).
    assert_eq!(thp_enabled(with), thp_enabled(std::process::id()));
    assert_eq!(thp_enabled(without), "0");
}

#[test]
fn killing_the_guard_kills_every_child_within_a_second() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let pids: Vec<u32> = vms(3)
        .into_iter()
        .map(|vm| c.spawn(&stand_in(dir.path(), vm)).unwrap())
        .collect();
    let status = guard.status();
    assert_eq!(status.children.len(), 3, "{status:?}");
    assert!(pids.iter().all(|p| alive(*p)));
    let killed = Instant::now();
    guard.kill9();
    let gone = wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)))
        .expect("children outlived the guard");
    println!("children gone {:?} after kill -9", gone - killed);
    assert!(
        gone - killed < Duration::from_secs(1),
        "{:?}",
        gone - killed
    );
}

#[test]
fn the_lease_counter_rises_every_renewal_and_a_reader_sees_it_live() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let path = lease_path(&dir.path().join("datastore"), "h1");
    let t = timings();
    let mut observer = LeaseObserver::new();
    let start = Instant::now();
    let mut stamps = Vec::new();
    while start.elapsed() < Duration::from_millis(1500) {
        let lease = read_lease(&path);
        if let Some(l) = &lease {
            if stamps.last() != Some(&l.stamp()) {
                stamps.push(l.stamp());
            }
        }
        observer.observe(Instant::now(), lease);
        let verdict = observer.verdict(Instant::now(), start, t.expiry());
        match verdict {
            LeaseVerdict::Live {
                unchanged_for,
                state,
            } => {
                assert_eq!(state, LeaseState::Live);
                assert!(unchanged_for < ms(400), "{unchanged_for:?}");
            }
            other => panic!("{other:?}"),
        }
        std::thread::sleep(ms(20));
    }
    // 15 periods: the counter rose at least 10 times, one incarnation (a busy reader may
    // miss a write: the counter only rises between two it saw).
    let status = guard.status();
    assert!(stamps.iter().all(|s| s.0 == status.incarnation));
    assert!(stamps.windows(2).all(|w| w[1].1 > w[0].1), "{stamps:?}");
    let (first, last) = (stamps[0].1, stamps.last().unwrap().1);
    assert!(last - first >= 10, "{stamps:?}");
    assert!(status.counter >= stamps.last().unwrap().1);
    assert!(status.renewal_age_ms.unwrap() < 300, "{status:?}");
}

#[test]
fn hanging_lease_writes_without_contact_self_fence_before_the_lease_expires() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let pids: Vec<u32> = vms(2)
        .into_iter()
        .map(|vm| c.spawn(&stand_in(dir.path(), vm)).unwrap())
        .collect();
    let path = lease_path(&dir.path().join("datastore"), "h1");
    let t = timings();
    let mut observer = LeaseObserver::new();
    observer.observe(Instant::now(), read_lease(&path));
    // The next write's open blocks on the FIFO for good.
    let made = wait_until(Duration::from_secs(2), || {
        nix::unistd::mkfifo(&temp_path(&path), nix::sys::stat::Mode::S_IRWXU).is_ok()
    });
    assert!(made.is_some(), "no FIFO at the temporary file");
    let mut last_change = Instant::now();
    let mut gone_at = None;
    let expired_at = loop {
        let now = Instant::now();
        let before = observer.last().map(|l| l.stamp());
        observer.observe(now, read_lease(&path));
        if observer.last().map(|l| l.stamp()) != before {
            last_change = now;
        }
        if gone_at.is_none() && pids.iter().all(|p| !alive(*p)) {
            gone_at = Some(now);
        }
        // A reader that started observing at the last write.
        if observer.verdict(now, last_change, t.expiry()) == LeaseVerdict::Expired {
            break now;
        }
        assert!(now - last_change < Duration::from_secs(10), "never expired");
        std::thread::sleep(ms(10));
    };
    let gone_at = gone_at.expect("the children outlived the lease");
    println!(
        "children killed {:?} after the last write was seen, lease expired {:?} after it",
        gone_at - last_change,
        expired_at - last_change
    );
    assert!(gone_at < expired_at);
    assert!(gone_at - last_change <= t.self_fence_after + Duration::from_secs(1));
    let status = guard.status();
    assert!(status.children.is_empty(), "{status:?}");
    assert_eq!(status.self_fences, 1, "{status:?}");
    assert!(status.exits.iter().all(|e| e.exit == ChildExit::Signal(9)));
    // While it fences, the guard starts nothing.
    let refused = c.spawn(&stand_in(dir.path(), Uuid::from_u128(99)));
    assert!(
        matches!(
            refused,
            Err(GuardClientError::Refused(GuardRefusal::Fenced))
        ),
        "{refused:?}"
    );
}

#[test]
fn failing_lease_writes_with_console_contact_keep_the_children() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let pids: Vec<u32> = vms(2)
        .into_iter()
        .map(|vm| c.spawn(&stand_in(dir.path(), vm)).unwrap())
        .collect();
    let petter = Petter::start(
        &guard,
        pet(Some(0), Vec::new(), IsolationResponse::PowerOff),
    );
    let path = lease_path(&dir.path().join("datastore"), "h1");
    // Every write now fails: its temporary file is a directory.
    let made = wait_until(Duration::from_secs(2), || {
        std::fs::create_dir(temp_path(&path)).is_ok()
    });
    assert!(made.is_some());
    let t = timings();
    std::thread::sleep(t.self_fence_after + ms(1500));
    let status = guard.status();
    assert!(
        status.renewal_age_ms.unwrap() > t.self_fence_after.as_millis() as u64,
        "the lease still renews: {status:?}"
    );
    assert!(pids.iter().all(|p| alive(*p)), "{status:?}");
    assert_eq!(status.self_fences, 0);
    assert_eq!(status.children.len(), 2);
    // The contact goes too (the agent stops): now it self-fences.
    drop(petter);
    let gone = wait_until(t.self_fence_after + ms(1500), || {
        pids.iter().all(|p| !alive(*p))
    });
    assert!(gone.is_some(), "{:?}", guard.status());
}

/// Two children, the first HA; the agent pets with `response`, then goes for good.
fn agent_goes(response: IsolationResponse) -> (TempDir, Guard, Vec<u32>, Vec<Uuid>) {
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let ids = vms(2);
    let pids: Vec<u32> = ids
        .iter()
        .map(|vm| c.spawn(&stand_in(dir.path(), *vm)).unwrap())
        .collect();
    let petter = Petter::start(&guard, pet(Some(0), vec![ids[0]], response));
    std::thread::sleep(ms(500));
    let status = guard.status();
    assert!(
        !status.isolated && status.agent_absent_ms.is_none(),
        "{status:?}"
    );
    drop(petter);
    (dir, guard, pids, ids)
}

#[test]
fn the_agent_gone_past_its_grace_with_power_off_stops_the_ha_vms_only() {
    if !ready(false) {
        return;
    }
    let (dir, guard, pids, ids) = agent_goes(IsolationResponse::PowerOff);
    let t = timings();
    let path = lease_path(&dir.path().join("datastore"), "h1");
    let stopped = wait_until(t.agent_grace + ms(2000), || {
        read_lease(&path).is_some_and(|l| l.state != LeaseState::Live)
    });
    assert!(stopped.is_some(), "{:?}", guard.status());
    let lease = read_lease(&path).unwrap();
    assert_eq!(lease.state, LeaseState::Stopped { vms: vec![ids[0]] });
    assert!(lease.agent_absent_ms.is_some());
    assert!(!alive(pids[0]));
    assert!(alive(pids[1]));
    let status = guard.status();
    let isolation = status.isolation.clone().unwrap();
    assert_eq!(isolation.response, IsolationResponse::PowerOff);
    assert_eq!(isolation.vms, vec![ids[0]]);
    assert_eq!(status.children.len(), 1, "{status:?}");
    assert_eq!(status.self_fences, 0);
}

#[test]
fn the_agent_gone_past_its_grace_with_keep_running_changes_nothing() {
    if !ready(false) {
        return;
    }
    let (dir, guard, pids, _) = agent_goes(IsolationResponse::KeepRunning);
    let t = timings();
    let isolated = wait_until(t.agent_grace + ms(1000), || guard.status().isolated);
    assert!(isolated.is_some(), "{:?}", guard.status());
    std::thread::sleep(ms(500));
    assert!(pids.iter().all(|p| alive(*p)));
    let lease = read_lease(&lease_path(&dir.path().join("datastore"), "h1")).unwrap();
    assert_eq!(lease.state, LeaseState::Live);
    let status = guard.status();
    assert!(status.isolation.is_none(), "{status:?}");
}

#[test]
fn a_vm_started_again_during_a_shutdown_response_is_not_written_stopped() {
    if !ready(false) {
        return;
    }
    // Two HA VMs; the stand-ins have no QMP: the powerdown fails and the shutdown waits its 3 s
    // for both. Meanwhile the first VM's child dies and the VM is started again (as a crash
    // restart does once contact is back); the second's is killed at the end.
    let dir = TempDir::new().unwrap();
    let guard = Guard::start_with(dir.path(), "h1", "g", &["--shutdown-wait", "3s"]);
    let mut c = guard.client();
    let ids = vms(2);
    let pids: Vec<u32> = ids
        .iter()
        .map(|vm| c.spawn(&stand_in(dir.path(), *vm)).unwrap())
        .collect();
    let petter = Petter::start(
        &guard,
        pet(Some(0), ids.clone(), IsolationResponse::Shutdown),
    );
    std::thread::sleep(ms(500));
    drop(petter);
    let t = timings();
    let isolated = wait_until(t.agent_grace + ms(2000), || guard.status().isolated);
    assert!(isolated.is_some(), "{:?}", guard.status());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(ms(2000), || !alive(pids[0])).is_some());
    let again = c.spawn(&stand_in(dir.path(), ids[0])).unwrap();
    assert!(
        guard.status().isolation.is_none(),
        "the shutdown still waits"
    );
    let done = wait_until(Duration::from_secs(15), || {
        guard.status().isolation.is_some()
    });
    assert!(done.is_some(), "{:?}", guard.status());
    assert_eq!(guard.status().isolation.unwrap().vms, vec![ids[1]]);
    assert!(alive(again), "the VM started again runs");
    assert!(!alive(pids[1]));
    std::thread::sleep(ms(300));
    let lease = read_lease(&lease_path(&dir.path().join("datastore"), "h1")).unwrap();
    assert_eq!(lease.state, LeaseState::Stopped { vms: vec![ids[1]] });
}

#[test]
fn a_shutdown_response_kills_nothing_once_the_agent_is_back() {
    if !ready(false) {
        return;
    }
    // The stand-in has no QMP: its guest never powers off, so the shutdown would kill it after
    // its 3 s; the agent comes back first.
    let dir = TempDir::new().unwrap();
    let guard = Guard::start_with(dir.path(), "h1", "g", &["--shutdown-wait", "3s"]);
    let mut c = guard.client();
    let vm = vms(1)[0];
    let pid = c.spawn(&stand_in(dir.path(), vm)).unwrap();
    let the_pet = pet(Some(0), vec![vm], IsolationResponse::Shutdown);
    let petter = Petter::start(&guard, the_pet.clone());
    std::thread::sleep(ms(500));
    drop(petter);
    let t = timings();
    let isolated = wait_until(t.agent_grace + ms(2000), || guard.status().isolated);
    assert!(isolated.is_some(), "{:?}", guard.status());
    let _back = Petter::start(&guard, the_pet);
    let done = wait_until(Duration::from_secs(10), || {
        guard.status().isolation.is_some()
    });
    assert!(done.is_some(), "{:?}", guard.status());
    assert!(!guard.status().isolated);
    assert_eq!(guard.status().isolation.unwrap().vms, Vec::<Uuid>::new());
    std::thread::sleep(ms(3500));
    assert!(alive(pid), "the VM was killed after its agent came back");
    let lease = read_lease(&lease_path(&dir.path().join("datastore"), "h1")).unwrap();
    assert_eq!(lease.state, LeaseState::Live);
}

#[test]
fn a_second_guard_for_the_host_is_refused_while_the_first_runs() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut first = Guard::start(dir.path(), "h1", "first");
    let incarnation = first.status().incarnation;
    let stderr = dir.path().join("second.stderr");
    let mut second = guard_command(
        dir.path(),
        "h1",
        &dir.path().join("second.sock"),
        &timings(),
    )
    .stderr(File::create(&stderr).unwrap())
    .spawn()
    .unwrap();
    let mut exit = None;
    wait_until(Duration::from_secs(5), || {
        exit = second.try_wait().unwrap();
        exit.is_some()
    });
    let Some(exit) = exit else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("the second guard runs");
    };
    assert!(!exit.success());
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("another guard holds the lease"), "{log}");
    // Once the first is gone, a guard for the host starts with a new incarnation.
    first.kill9();
    let second = Guard::start(dir.path(), "h1", "second");
    assert_ne!(second.status().incarnation, incarnation);
}

#[test]
fn release_is_refused_with_children_and_writes_released_without() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let vm = Uuid::from_u128(1);
    let pid = c.spawn(&stand_in(dir.path(), vm)).unwrap();
    match c.release() {
        Err(GuardClientError::Refused(GuardRefusal::HasChildren { vms })) => {
            assert_eq!(vms, vec![vm])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.kill(vm).unwrap(), Some(ChildExit::Signal(9)));
    assert!(!alive(pid));
    assert_eq!(c.kill(vm).unwrap(), None);
    let status = guard.status();
    assert!(status.children.is_empty());
    assert_eq!(status.exits.last().map(|e| (e.vm, e.pid)), Some((vm, pid)));
    c.release().unwrap();
    let exited = wait_until(Duration::from_secs(5), || {
        matches!(guard.process.try_wait(), Ok(Some(_)))
    });
    assert!(exited.is_some(), "the guard still runs after release");
    assert!(guard.process.wait().unwrap().success(), "{}", guard.log());
    let lease = read_lease(&lease_path(&dir.path().join("datastore"), "h1")).unwrap();
    assert_eq!(lease.state, LeaseState::Released);
    assert!(!guard.control.exists());
}

#[test]
fn a_child_that_exits_at_once_is_answered_with_its_status_and_log() {
    if !ready(false) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let log = dir.path().join("failing.log");
    std::fs::write(&log, "an earlier run\n").unwrap();
    let failing = SpawnSpec {
        vm: Uuid::from_u128(1),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo starting; echo 'qemu: could not open disk image' >&2; exit 3".into(),
        ],
        qmp_socket: dir.path().join("never.sock"),
        pidfile: None,
        log,
        ready_timeout_ms: 5000,
        confinement: None,
        no_huge_pages: false,
    };
    match c.spawn(&failing) {
        Err(GuardClientError::Refused(GuardRefusal::Exited { exit, log_tail })) => {
            assert_eq!(exit, ChildExit::Code(3));
            assert_eq!(
                log_tail,
                vec!["starting", "qemu: could not open disk image"]
            );
        }
        other => panic!("{other:?}"),
    }
    // A child whose socket never answers is killed at its timeout.
    let mut silent = stand_in(dir.path(), Uuid::from_u128(2));
    silent.qmp_socket = dir.path().join("elsewhere.sock");
    silent.ready_timeout_ms = 300;
    match c.spawn(&silent) {
        Err(GuardClientError::Refused(GuardRefusal::NotReady { timeout_ms, .. })) => {
            assert_eq!(timeout_ms, 300)
        }
        other => panic!("{other:?}"),
    }
    let status = guard.status();
    assert!(status.children.is_empty(), "{status:?}");
    let exits: Vec<_> = status.exits.iter().map(|e| (e.vm, e.exit)).collect();
    assert_eq!(
        exits,
        vec![
            (Uuid::from_u128(1), ChildExit::Code(3)),
            (Uuid::from_u128(2), ChildExit::Signal(9))
        ]
    );
    // A program that does not exist.
    let mut missing = stand_in(dir.path(), Uuid::from_u128(3));
    missing.argv[0] = "/nonexistent/qemu".into();
    let refused = c.spawn(&missing);
    assert!(
        matches!(
            refused,
            Err(GuardClientError::Refused(GuardRefusal::Start { .. }))
        ),
        "{refused:?}"
    );
    // One child per VM.
    let ok = stand_in(dir.path(), Uuid::from_u128(4));
    let pid = c.spawn(&ok).unwrap();
    let again = c.spawn(&ok);
    assert!(
        matches!(again, Err(GuardClientError::Refused(GuardRefusal::AlreadyRunning { pid: p, .. })) if p == pid),
        "{again:?}"
    );
}

#[test]
fn a_real_qemu_is_the_guards_child_and_dies_with_it() {
    if !ready(true) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut guard = Guard::start(dir.path(), "h1", "g");
    let mut c = guard.client();
    let qemu = |vm: Uuid| {
        let qmp = dir.path().join(format!("{vm}.qmp"));
        SpawnSpec {
            vm,
            argv: [
                QEMU,
                "-machine",
                "none",
                "-accel",
                "tcg",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-m",
                "32",
                "-qmp",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("unix:{},server=on,wait=off", qmp.display())])
            .collect(),
            qmp_socket: qmp,
            pidfile: Some(dir.path().join(format!("{vm}.pid"))),
            log: dir.path().join(format!("{vm}.log")),
            ready_timeout_ms: 10_000,
            confinement: None,
            no_huge_pages: false,
        }
    };
    let [a, b] = [Uuid::from_u128(1), Uuid::from_u128(2)];
    let spec = qemu(a);
    let started = Instant::now();
    let pid = c.spawn(&spec).unwrap();
    println!("QEMU ready {:?} after the spawn request", started.elapsed());
    let pidfile = std::fs::read_to_string(spec.pidfile.as_ref().unwrap()).unwrap();
    assert_eq!(pidfile.trim(), pid.to_string());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("-machine"));
    assert_eq!(c.kill(a).unwrap(), Some(ChildExit::Signal(9)));
    assert!(!alive(pid));
    let pids = [c.spawn(&qemu(a)).unwrap(), c.spawn(&qemu(b)).unwrap()];
    let killed = Instant::now();
    guard.kill9();
    let gone = wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p)))
        .expect("QEMU outlived its guard");
    assert!(
        gone - killed < Duration::from_secs(1),
        "{:?}",
        gone - killed
    );
}
