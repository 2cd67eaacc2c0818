//! HA under random faults in the lab (the driver: `common/chaos.rs`): a 3-host lab with four
//! HA VMs (a must-anti-affinity pair among them) and one VM without HA; faults dealt at random
//! from host kill, partition, agent kill (within and past its grace), console kill (alone and
//! in the middle of a failover) and QEMU kill, one at a time, each healed and the cluster
//! settled before the next; a checker polls every 100 ms that no VM ever runs twice, that the
//! VM without HA never runs off its host and that the pair never shares one.
//!
//! 10 faults with seed 20261203 by default (reproducible in CI); `VINFRA_CHAOS_SEED` and
//! `VINFRA_CHAOS_FAULTS` change them (`scripts/chaos.sh` runs 200). Prints each fault, its
//! times to fail over and to settle, and `RESULT ha chaos <violations>/<faults> PASS|FAIL`.

#[path = "common/chaos.rs"]
mod chaos;
mod common;

use common::can_run_labs;

#[test]
fn ha_keeps_every_invariant_through_random_faults() {
    if !can_run_labs() {
        return;
    }
    let config = chaos::Config::from_env(10);
    let outcome = chaos::run("chaos", &config);
    // With the console's events when an invariant broke.
    println!("{}", outcome.report(!outcome.passed()));
    assert!(
        outcome.polls > 100,
        "the checker polled {} times",
        outcome.polls
    );
    assert!(
        outcome.passed(),
        "{} violations in {} faults (seed {}): see the report above",
        outcome.violations.len(),
        outcome.faults.len(),
        outcome.seed
    );
}
