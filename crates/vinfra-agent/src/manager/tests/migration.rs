//! The manager's live migrations, as source and as destination, against the fake QEMU.

use super::super::early_passes::{EarlyPasses, EARLY_DOWNTIME_MS, FEWEST_EARLY_DOWNTIME_MS};
use super::*;
use crate::qemu::{MigrationParams, MigrationState};

#[tokio::test]
async fn an_outgoing_migration_sends_with_its_settings_and_shows_in_the_state() {
    let h = host().await;
    let id = h.running("web").await;
    h.m.migrate_out(
        id,
        "tcp:10.0.0.2:4444",
        MigrationSettings {
            max_bandwidth: 0,
            downtime_limit_ms: 300,
            auto_converge: false,
        },
        None,
        None,
    )
    .await
    .unwrap();
    // The operator's bandwidth (none: unlimited); the first pass under its own downtime limit.
    assert!(h.fake.calls(id).contains(&Call::Migrate(
        "tcp:10.0.0.2:4444".into(),
        MigrationParams {
            max_bandwidth: UNLIMITED_BANDWIDTH,
            downtime_limit_ms: EARLY_DOWNTIME_MS,
            auto_converge: false,
        },
        None,
    )));
    assert!(h.m.record(id).await.unwrap().migrating_out);
    assert_eq!(h.state(id).await, PowerState::Migrating);
    let status = h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert_eq!(status.qemu_status, "active");
    assert_eq!(status.total_bytes, 64 << 20);
    // A stop must wait for the migration to end.
    assert_eq!(
        conflict(h.m.stop(id, true, LONG).await),
        StateConflict::MigrationInProgress
    );
    assert!(h.fake.is_alive(id));

    // Bad requests.
    let other = h.running("other").await;
    let e = h.m.migrate_out(
        other,
        "unix:/tmp/x",
        MigrationSettings::default(),
        None,
        None,
    );
    assert!(matches!(e.await, Err(ManagerError::MigrationUri(_))));
    h.m.stop(other, true, LONG).await.unwrap();
    assert_eq!(
        conflict(
            h.m.migrate_out(
                other,
                "tcp:10.0.0.2:1",
                MigrationSettings::default(),
                None,
                None
            )
            .await
        ),
        StateConflict::NotMigratable
    );
    assert_eq!(
        conflict(h.m.migration_status(other, Duration::ZERO).await),
        StateConflict::QemuNotRunning
    );
}

#[test]
fn the_first_two_passes_run_under_a_downtime_limit_of_a_few_milliseconds() {
    let early = EarlyPasses::of(300, false).unwrap();
    assert_eq!(early.early_downtime_ms, EARLY_DOWNTIME_MS);
    assert_eq!(early.downtime_limit_ms, 300);
    assert!(!early.over(1) && !early.over(2));
    assert!(early.over(3) && early.over(7));
    // An operator's limit at or below it is kept from the start: nothing to raise.
    assert_eq!(EarlyPasses::of(EARLY_DOWNTIME_MS, false), None);
    assert_eq!(EarlyPasses::of(5, false), None);
    // With the fewest passes, one early pass under 50 ms.
    let fewest = EarlyPasses::of(300, true).unwrap();
    assert_eq!(fewest.early_downtime_ms, FEWEST_EARLY_DOWNTIME_MS);
    assert!(!fewest.over(1) && fewest.over(2));
    assert_eq!(EarlyPasses::of(FEWEST_EARLY_DOWNTIME_MS, true), None);
}

/// The downtime limits the fake QEMU of `id` was given during its migration.
fn raised(h: &Host, id: Uuid) -> Vec<Call> {
    h.fake
        .calls(id)
        .into_iter()
        .filter(|c| matches!(c, Call::SetDowntimeLimit(_)))
        .collect()
}

#[tokio::test]
async fn the_operators_downtime_limit_takes_over_at_qemus_third_pass_event() {
    let h = host().await;
    let id = h.migrating("web").await;
    assert!(h.fake.begin_pass(id, 2, true));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(raised(&h, id).is_empty(), "raised in the second pass");
    assert!(h.fake.begin_pass(id, 3, true));
    // No status read: the event alone.
    let limit = MigrationSettings::default().downtime_limit_ms;
    let t = std::time::Instant::now();
    while raised(&h, id).is_empty() && t.elapsed() < LONG {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(raised(&h, id), vec![Call::SetDowntimeLimit(limit)]);
    // Once.
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert_eq!(raised(&h, id).len(), 1);
}

#[tokio::test]
async fn a_status_read_that_finds_the_third_pass_raises_the_limit_when_the_event_was_missed() {
    let h = host().await;
    let id = h.migrating("web").await;
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert!(h.fake.begin_pass(id, 2, false));
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert!(raised(&h, id).is_empty(), "raised in the second pass");
    assert!(h.fake.begin_pass(id, 3, false));
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    let limit = MigrationSettings::default().downtime_limit_ms;
    assert_eq!(raised(&h, id), vec![Call::SetDowntimeLimit(limit)]);
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert_eq!(raised(&h, id).len(), 1);

    // An operator's limit within the early passes' is never changed.
    let tight = h.running("tight").await;
    h.m.migrate_out(
        tight,
        "tcp:10.0.0.2:4444",
        MigrationSettings {
            downtime_limit_ms: 5,
            ..MigrationSettings::default()
        },
        None,
        None,
    )
    .await
    .unwrap();
    assert!(h.fake.begin_pass(tight, 3, true));
    h.m.migration_status(tight, Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(raised(&h, tight).is_empty());
}

#[tokio::test]
async fn with_the_fewest_passes_the_operators_limit_takes_over_at_the_second_pass() {
    // A QEMU that loses writes under TCG: the guest should stop at the second pass's sync.
    let Host { tmp, fake, m } = host().await;
    let h = Host {
        tmp,
        fake,
        m: m.with_fewest_migration_passes(true),
    };
    let id = h.migrating("web").await;
    assert!(h.fake.calls(id).iter().any(|c| matches!(
        c,
        Call::Migrate(_, p, _) if p.downtime_limit_ms == FEWEST_EARLY_DOWNTIME_MS
    )));
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert!(raised(&h, id).is_empty(), "raised in the first pass");
    assert!(h.fake.begin_pass(id, 2, true));
    let t = std::time::Instant::now();
    while raised(&h, id).is_empty() && t.elapsed() < LONG {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let limit = MigrationSettings::default().downtime_limit_ms;
    assert_eq!(raised(&h, id), vec![Call::SetDowntimeLimit(limit)]);
}

#[tokio::test]
async fn an_agent_restarted_during_the_early_passes_still_raises_the_limit() {
    let h = host().await;
    let id = h.migrating("web").await;
    let h = h.restart().await;
    assert!(h.fake.begin_pass(id, 3, false));
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    let limit = MigrationSettings::default().downtime_limit_ms;
    assert_eq!(raised(&h, id), vec![Call::SetDowntimeLimit(limit)]);
    // Done with: a later restart does not set it again.
    let h = h.restart().await;
    h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert_eq!(raised(&h, id).len(), 1);
}

#[tokio::test]
async fn a_status_request_with_a_wait_returns_at_the_migrations_end_and_lets_a_cancel_through() {
    let h = Arc::new(host().await);
    let id = h.migrating("web").await;
    // Nothing happens: the wait runs out and the answer is the state then.
    let asked = std::time::Instant::now();
    let status = h.m.migration_status(id, Duration::from_millis(150)).await;
    assert_eq!(status.unwrap().qemu_status, "active");
    assert!(asked.elapsed() >= Duration::from_millis(150));

    // The end wakes the waiter long before its 30 s.
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move { h.m.migration_status(id, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = std::time::Instant::now();
    assert!(h.fake.complete_migration(id));
    let status = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter woke at the end")
        .unwrap()
        .unwrap();
    assert_eq!(status.qemu_status, "completed");
    assert!(asked.elapsed() < Duration::from_secs(5));
    // Ended already: at once.
    let status = h.m.migration_status(id, Duration::from_secs(30)).await;
    assert_eq!(status.unwrap().qemu_status, "completed");

    // A waiter does not hold the VM: a cancel gets through and ends its wait.
    let other = h.migrating("db").await;
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move { h.m.migration_status(other, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), h.m.cancel_migration(other))
        .await
        .expect("the cancel was not held up")
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter woke at the cancel")
        .unwrap()
        .unwrap();
    assert_eq!(status.qemu_status, "cancelled");
}

#[tokio::test]
async fn an_observation_with_a_wait_returns_when_the_incoming_guest_arrives() {
    let h = Arc::new(host().await);
    let vm = instance("web");
    let id = vm.id;
    h.m.prepare_incoming(vm, None).await.unwrap();
    // Nothing arrives: the wait runs out and the answer is the state then.
    let asked = std::time::Instant::now();
    let seen = h.m.observe_arrival(id, Duration::from_millis(150)).await;
    assert_eq!(seen.unwrap().state, PowerState::Incoming);
    assert!(asked.elapsed() >= Duration::from_millis(150));

    // The guest's arrival (QEMU's `RESUME`) wakes the waiter long before its 30 s, and the
    // waiter does not hold the VM meanwhile.
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move { h.m.observe_arrival(id, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now = tokio::time::timeout(Duration::from_secs(5), h.m.observe(id))
        .await
        .expect("the VM was not held by the waiter");
    assert_eq!(now.unwrap().state, PowerState::Incoming);
    assert!(!waiter.is_finished());
    let arrived = std::time::Instant::now();
    assert!(h.fake.arrive(id));
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter woke at the arrival")
        .unwrap()
        .unwrap();
    assert_eq!(seen.state, PowerState::Running);
    assert!(arrived.elapsed() < Duration::from_secs(5));
    // Arrived already: at once.
    let asked = std::time::Instant::now();
    let seen = h.m.observe_arrival(id, Duration::from_secs(30)).await;
    assert_eq!(seen.unwrap().state, PowerState::Running);
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_source_whose_migration_completed_is_never_resumed_and_is_then_quit() {
    let h = host().await;
    let id = h.migrating("web").await;
    assert!(h.fake.complete_migration(id));
    assert_eq!(h.state(id).await, PowerState::Paused);
    assert_eq!(h.fake.status(id), Some(RunState::PostMigrate));
    // The guest runs on the destination: this copy stays paused, whoever asks.
    assert_eq!(conflict(h.m.start(id).await), StateConflict::MigratedAway);
    assert_eq!(
        conflict(h.m.create(instance_with_id("web", id), true).await),
        StateConflict::MigratedAway
    );
    assert_eq!(
        conflict(
            h.m.migrate_out(
                id,
                "tcp:10.0.0.3:4444",
                MigrationSettings::default(),
                None,
                None
            )
            .await
        ),
        StateConflict::MigratedAway
    );
    assert_eq!(
        conflict(h.m.cancel_migration(id).await),
        StateConflict::MigrationCompleted
    );
    let calls = h.fake.calls(id);
    assert_eq!(count(&calls, |c| *c == Call::Cont), 0, "{calls:?}");
    assert_eq!(count(&calls, |c| *c == Call::CancelMigration), 0);
    assert_eq!(
        h.m.migration_status(id, Duration::ZERO)
            .await
            .unwrap()
            .qemu_status,
        "completed"
    );

    h.m.finish_migration_source(id).await.unwrap();
    assert!(!h.fake.is_alive(id));
    assert!(!h.vm_dir(id).exists());
    assert!(
        h.tmp.path().join("ds/vms").join(id.to_string()).is_dir(),
        "the disks stay for the destination"
    );
    assert!(matches!(
        h.m.observe(id).await,
        Err(ManagerError::NoSuchVm(_))
    ));
}

fn instance_with_id(name: &str, id: Uuid) -> VmInstance {
    VmInstance {
        id,
        ..instance(name)
    }
}

#[tokio::test]
async fn a_source_whose_migration_did_not_complete_is_never_quit() {
    let h = host().await;
    let id = h.migrating("web").await;
    assert_eq!(
        conflict(h.m.finish_migration_source(id).await),
        StateConflict::MigrationNotCompleted(MigrationState::Active("active".into()))
    );
    assert!(h.fake.is_alive(id));
    // The migration fails: the guest runs on here, and still is not quit.
    assert!(h.fake.fail_migration(id, "connection reset"));
    assert_eq!(h.state(id).await, PowerState::Running);
    assert!(!h.m.record(id).await.unwrap().migrating_out);
    let status = h.m.migration_status(id, Duration::ZERO).await.unwrap();
    assert_eq!(
        (status.qemu_status.as_str(), status.error.as_deref()),
        ("failed", Some("connection reset"))
    );
    assert_eq!(
        conflict(h.m.finish_migration_source(id).await),
        StateConflict::MigrationNotCompleted(MigrationState::Failed)
    );
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::Kill), 0);
    assert!(h.fake.is_alive(id));
    // It may migrate again.
    h.m.migrate_out(
        id,
        "tcp:10.0.0.3:4444",
        MigrationSettings::default(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(h.state(id).await, PowerState::Migrating);
}

#[tokio::test]
async fn a_cancelled_migration_leaves_the_guest_running_here() {
    let h = host().await;
    let id = h.migrating("web").await;
    h.m.cancel_migration(id).await.unwrap();
    assert_eq!(count(&h.fake.calls(id), |c| *c == Call::CancelMigration), 1);
    assert_eq!(h.fake.migration(id), Some(MigrationState::Cancelled));
    assert!(!h.m.record(id).await.unwrap().migrating_out);
    assert_eq!(h.state(id).await, PowerState::Running);
    // Now it can be stopped.
    h.m.stop(id, false, LONG).await.unwrap();
    assert_eq!(h.state(id).await, PowerState::Stopped);
}

#[tokio::test]
async fn an_incoming_vm_waits_on_a_port_and_is_aborted_while_it_waits() {
    let h = host().await;
    let vm = VmInstance {
        started_at: Some(1_700_000_000),
        slot: None,
        ..instance("web")
    };
    let uri = h.m.prepare_incoming(vm.clone(), None).await.unwrap();
    assert!(uri.starts_with("tcp:127.0.0.1:"), "{uri}");
    assert_eq!(h.fake.listening(vm.id).as_deref(), Some(uri.as_str()));
    assert!(h.fake.last_launch(vm.id).unwrap().incoming);
    assert_eq!(h.state(vm.id).await, PowerState::Incoming);
    let record = h.m.record(vm.id).await.unwrap();
    assert!(record.incoming && !record.want_running);
    assert_eq!(record.started_at, Some(1_700_000_000), "uptime survives");
    // Asked again (a console retrying), the same URI.
    assert_eq!(h.m.prepare_incoming(vm.clone(), None).await.unwrap(), uri);
    assert_eq!(
        count(&h.fake.calls(vm.id), |c| matches!(c, Call::Launch { .. })),
        1
    );
    // It cannot be started or migrated while it waits.
    assert_eq!(
        conflict(h.m.start(vm.id).await),
        StateConflict::AwaitsIncoming
    );
    h.m.abort_incoming(vm.id).await.unwrap();
    assert!(!h.fake.is_alive(vm.id));
    assert!(!h.vm_dir(vm.id).exists());

    // An incoming VM for a VM this host runs is refused.
    let here = h.running("here").await;
    assert_eq!(
        conflict(
            h.m.prepare_incoming(instance_with_id("here", here), None)
                .await
        ),
        StateConflict::AlreadyHere
    );
}

#[tokio::test]
async fn an_incoming_qemu_tries_other_ports_and_gives_up_cleanly() {
    let h = host().await;
    h.fake.busy_ports(2);
    let vm = instance("web");
    let uri = h.m.prepare_incoming(vm.clone(), None).await.unwrap();
    let listens = count(&h.fake.calls(vm.id), |c| {
        matches!(c, Call::ListenIncoming(..))
    });
    assert_eq!(listens, 3);
    assert_eq!(h.fake.listening(vm.id), Some(uri));

    h.fake.busy_ports(100);
    let unlucky = instance("unlucky");
    let e =
        h.m.prepare_incoming(unlucky.clone(), None)
            .await
            .unwrap_err();
    assert!(matches!(e, ManagerError::Qemu(_)), "{e:?}");
    assert!(!h.fake.is_alive(unlucky.id));
    assert!(!h.vm_dir(unlucky.id).exists());
    assert!(matches!(
        h.m.observe(unlucky.id).await,
        Err(ManagerError::NoSuchVm(_))
    ));
}

#[tokio::test]
async fn an_incoming_qemu_whose_guest_arrived_is_never_aborted() {
    let h = host().await;
    let vm = instance("web");
    h.m.prepare_incoming(vm.clone(), None).await.unwrap();
    assert!(h.fake.arrive(vm.id));
    let obs = h.m.observe(vm.id).await.unwrap();
    assert_eq!(obs.state, PowerState::Running);
    let record = h.m.record(vm.id).await.unwrap();
    assert!(!record.incoming && record.want_running && record.incoming_uri.is_none());
    assert_eq!(
        conflict(h.m.abort_incoming(vm.id).await),
        StateConflict::GuestArrived
    );
    assert_eq!(count(&h.fake.calls(vm.id), |c| *c == Call::Kill), 0);
    assert!(h.fake.is_alive(vm.id));
    // Paused after arriving, it is still the only copy.
    h.fake.pause(vm.id);
    assert_eq!(
        conflict(h.m.abort_incoming(vm.id).await),
        StateConflict::GuestArrived
    );
    assert!(h.fake.is_alive(vm.id));
    // It is an ordinary VM here now.
    assert_eq!(h.m.start(vm.id).await.unwrap().state, PowerState::Running);
    h.m.stop(vm.id, false, LONG).await.unwrap();
    assert_eq!(h.state(vm.id).await, PowerState::Stopped);
}

#[tokio::test]
async fn a_vm_that_arrived_by_migration_can_leave_again_and_is_not_taken_for_a_sent_copy() {
    // QEMU shows the incoming migration that brought the guest as `completed` until an outgoing
    // one starts; none of the source's checks may read that as "this copy was sent away".
    let h = host().await;
    let vm = instance("web");
    h.m.prepare_incoming(vm.clone(), None).await.unwrap();
    assert!(h.fake.arrive(vm.id));
    assert_eq!(h.fake.migration(vm.id), Some(MigrationState::Completed));
    assert_eq!(h.state(vm.id).await, PowerState::Running);
    // No outgoing migration yet: the console is told none, a cancel does nothing, and the
    // copy is never quit as a finished source.
    assert_eq!(
        h.m.migration_status(vm.id, Duration::ZERO)
            .await
            .unwrap()
            .qemu_status,
        "none"
    );
    h.m.cancel_migration(vm.id).await.unwrap();
    assert!(matches!(
        conflict(h.m.finish_migration_source(vm.id).await),
        StateConflict::MigrationNotCompleted(MigrationState::None)
    ));
    assert!(h.fake.is_alive(vm.id));
    // It leaves again: the status is the outgoing migration's.
    h.m.migrate_out(
        vm.id,
        "tcp:10.0.0.3:4444",
        MigrationSettings::default(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(h.state(vm.id).await, PowerState::Migrating);
    assert_ne!(
        h.m.migration_status(vm.id, Duration::ZERO)
            .await
            .unwrap()
            .qemu_status,
        "completed"
    );
    assert!(h.fake.complete_migration(vm.id));
    assert_eq!(
        h.m.migration_status(vm.id, Duration::ZERO)
            .await
            .unwrap()
            .qemu_status,
        "completed"
    );
    h.m.finish_migration_source(vm.id).await.unwrap();
    assert!(!h.fake.is_alive(vm.id));
}

#[tokio::test]
async fn an_incoming_qemu_that_died_is_aborted() {
    let h = host().await;
    let vm = instance("web");
    h.m.prepare_incoming(vm.clone(), None).await.unwrap();
    h.fake.crash(vm.id);
    h.m.abort_incoming(vm.id).await.unwrap();
    assert!(!h.vm_dir(vm.id).exists());
}

/// With credentials, QEMU is told the other end and finds this end's files in a directory of
/// their own when it is asked (ca-cert.pem, server-* for the destination, client-* for the
/// source); the files are gone once it has read them.
#[tokio::test]
async fn an_encrypted_migration_hands_qemu_its_credentials_for_the_moment_it_reads_them() {
    use crate::qemu::fake::TlsSeen;
    let creds = vinfra_proto::pki::ClusterCa::generate("t")
        .unwrap()
        .issue_migration_tls()
        .unwrap();
    let h = host().await;
    let vm = instance("web");
    let uri =
        h.m.prepare_incoming(vm.clone(), Some(creds.destination.clone()))
            .await
            .unwrap();
    // Asked again for the same migration: the same listener; for another (plain, or another
    // source): refused, never reported as what it is not.
    assert_eq!(
        h.m.prepare_incoming(vm.clone(), Some(creds.destination.clone()))
            .await
            .unwrap(),
        uri
    );
    assert_eq!(
        conflict(h.m.prepare_incoming(vm.clone(), None).await),
        StateConflict::AlreadyHere
    );
    let seen = h.fake.calls(vm.id).into_iter().find_map(|c| match c {
        Call::ListenIncoming(_, tls) => Some(tls),
        _ => None,
    });
    assert_eq!(
        seen,
        Some(Some(TlsSeen {
            peer: creds.destination.peer.clone(),
            files: vec![
                "ca-cert.pem".into(),
                "dh-params.pem".into(),
                "server-cert.pem".into(),
                "server-key.pem".into()
            ],
        }))
    );
    let tls_dir = h.vm_dir(vm.id).join("migration-tls");
    assert!(!tls_dir.exists(), "credentials left behind");

    let id = h.running("src").await;
    h.m.migrate_out(
        id,
        "tcp:10.0.0.2:4444",
        MigrationSettings::default(),
        Some(creds.source.clone()),
        None,
    )
    .await
    .unwrap();
    let seen = h.fake.calls(id).into_iter().find_map(|c| match c {
        Call::Migrate(_, _, tls) => Some(tls),
        _ => None,
    });
    assert_eq!(
        seen,
        Some(Some(TlsSeen {
            peer: creds.source.peer.clone(),
            files: vec![
                "ca-cert.pem".into(),
                "client-cert.pem".into(),
                "client-key.pem".into()
            ],
        }))
    );
    assert!(!h.vm_dir(id).join("migration-tls").exists());
}

/// A source host whose manager has a switch (the model switch of the network tests), and a
/// running VM with a NIC on the overlay network `blue` there.
async fn switched_source() -> (Host, crate::network::tests::ModelSwitch, Uuid) {
    use crate::network::tests as switch;
    let tmp = with_datastore();
    let model = switch::model_switch(tmp.path(), switch::Refusals::default());
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Manager::open(ManagerConfig {
        switch: Some(crate::network::SwitchAttachment {
            control: model.control.clone(),
            ..switch::settings()
        }),
        ..config(tmp.path(), &fake)
    })
    .await
    .unwrap();
    m.apply_switch_config(switch::config()).await.unwrap();
    let mut vm = instance("web");
    vm.spec.nics = vec![NicSpec {
        network: "blue".into(),
        mac: Some("52:54:00:00:00:01".into()),
        ..Default::default()
    }];
    let obs = m.create(vm.clone(), true).await.unwrap();
    assert_eq!(obs.state, PowerState::Running);
    (Host { tmp, fake, m }, model, vm.id)
}

/// The redirects the switch was sent so far: where VM `web`'s frames were to go.
fn redirects(model: &crate::network::tests::ModelSwitch) -> Vec<Option<Ipv4Addr>> {
    model
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            Request::RedirectMac { network: 1, to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

/// Waits until the switch was sent `want` redirects.
async fn redirects_become(model: &crate::network::tests::ModelSwitch, want: &[Option<Ipv4Addr>]) {
    let deadline = std::time::Instant::now() + LONG;
    while redirects(model) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "redirects {:?}, not {want:?}",
            redirects(model)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_stopped_sources_frames_go_to_the_destination_until_it_runs_here_again() {
    let (h, model, id) = switched_source().await;
    let to = Some(Ipv4Addr::new(10, 0, 0, 2));
    let migrate = || {
        h.m.migrate_out(
            id,
            "tcp:10.0.0.2:4444",
            MigrationSettings::default(),
            None,
            to,
        )
    };
    // Nothing while QEMU sends with the guest running; from its stop for the switchover on, the
    // VM's frames go to the destination; a failure after the stop (the guest runs here again)
    // ends that.
    migrate().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redirects(&model), vec![]);
    assert!(h.fake.switchover(id));
    redirects_become(&model, &[to]).await;
    assert!(h.fake.fail_migration(id, "the destination went away"));
    redirects_become(&model, &[to, None]).await;
    // Cancelled after the stop: ended too.
    migrate().await.unwrap();
    assert!(h.fake.switchover(id));
    redirects_become(&model, &[to, None, to]).await;
    h.m.cancel_migration(id).await.unwrap();
    redirects_become(&model, &[to, None, to, None]).await;
    // Cancelled before it: nothing to end.
    migrate().await.unwrap();
    h.m.cancel_migration(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redirects(&model).len(), 4);
    // Completed: the redirect stays until the VM's ports go with its QEMU.
    migrate().await.unwrap();
    assert!(h.fake.complete_migration(id));
    redirects_become(&model, &[to, None, to, None, to]).await;
    h.m.finish_migration_source(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redirects(&model).len(), 5);
    assert!(model
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Request::RemovePort { id: 1 })));
}

#[tokio::test]
async fn without_the_destinations_vtep_nothing_is_redirected() {
    let (h, model, id) = switched_source().await;
    h.m.migrate_out(
        id,
        "tcp:10.0.0.2:4444",
        MigrationSettings::default(),
        None,
        None,
    )
    .await
    .unwrap();
    assert!(h.fake.complete_migration(id));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redirects(&model), vec![]);
}
