//! The edge controller: every [`TICK`], the edge election of every router with an uplink
//! ([`crate::routers::edge::tick`]: an edge moves off a lost host or one in maintenance, with an
//! event); after an edge moved, every connected host's switch configuration is pushed at once
//! (the switch controller also pushes on the router record's change).

use std::sync::Arc;
use std::time::Instant;

use crate::networks::push::push_all;
use crate::routers::edge::{tick, TICK};
use crate::state::Console;

/// Runs forever: one election pass every [`TICK`]; hosts never heard from since `run` began
/// count as disconnected since then.
pub async fn run(console: Arc<Console>) {
    let started = Instant::now();
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if tick(&console, started).await {
            push_all(&console).await;
        }
    }
}
