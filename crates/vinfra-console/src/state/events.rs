//! The event history (`/vinfra/events/<seq>`): what happened, for operators. Only the last
//! [`MAX_EVENTS`] are kept: each append deletes the oldest beyond that, in the same transaction.
//!
//! An event is appended on its own ([`EventLog::record`]), or in the transaction of the change
//! it tells of ([`EventLog::appending`]): then the history never shows a change the store does
//! not hold, nor the other way round.
//!
//! Every event names its actor: the API token of the request or the controller that made the
//! change. The transport hands the actor to the core with each command
//! (`ConsoleApi::execute`), and each controller's task is started with its own; the core runs
//! the command within [`acting`], and [`event`] reads it from there, so that no resource
//! function has to carry it. A task the core spawns for a command takes the actor along
//! ([`inherit`]). Outside of any (a path nothing started with an actor) the actor is the
//! controller `console`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;

use vinfra_store::{Op, Store, Txn};
use vinfra_types::api::Event;
use vinfra_types::auth::Actor;

use super::locks::lock;
use super::records::{self as keys, now_s, MAX_EVENTS};
use crate::error::RecordError;

struct Log {
    next: u64,
    keys: VecDeque<String>,
}

/// The event history's sequence and the keys it holds.
pub struct EventLog {
    log: Mutex<Log>,
}

tokio::task_local! {
    static ACTOR: Actor;
}

/// The controller events name when nothing started the work with an actor.
pub const CONSOLE_ACTOR: &str = "console";

/// Runs `work` with `actor` as the actor of every event it records.
pub async fn acting<F: Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// Runs `work` (synchronous) with `actor` as the actor of every event it records.
pub fn acting_now<R>(actor: Actor, work: impl FnOnce() -> R) -> R {
    ACTOR.sync_scope(actor, work)
}

/// `work` with the actor in force now (for a task spawned on behalf of a command or a
/// controller).
pub fn inherit<F: Future>(work: F) -> impl Future<Output = F::Output> {
    acting(current_actor(), work)
}

/// The actor in force: the one [`acting`] set, else the controller `console`.
pub fn current_actor() -> Actor {
    ACTOR
        .try_with(Actor::clone)
        .unwrap_or_else(|_| Actor::controller(CONSOLE_ACTOR))
}

/// An event about to be recorded, naming the actor in force ([`current_actor`]).
pub fn event(kind: &str, object: &str, message: impl Into<String>) -> Event {
    Event {
        // The number is the record's key; it is filled in when the history is read.
        seq: 0,
        at: now_s(),
        kind: kind.into(),
        object: object.into(),
        message: message.into(),
        actor: Some(current_actor()),
    }
}

impl EventLog {
    /// Loads the keys of the stored history.
    pub fn load(store: &dyn Store) -> Result<Self, RecordError> {
        let (events, _) = store.range(keys::EVENTS)?;
        let next = events
            .last()
            .and_then(|kv| kv.key[keys::EVENTS.len()..].parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        Ok(EventLog {
            log: Mutex::new(Log {
                next,
                keys: events.into_iter().map(|kv| kv.key).collect(),
            }),
        })
    }

    /// Records an event in a transaction of its own. Failures are logged, not returned.
    pub fn record(&self, store: &dyn Store, event: Event) {
        let done = self.appending(Some(event), |ops| {
            let resp = store.txn(Txn {
                compare: vec![],
                success: ops,
                failure: vec![],
            })?;
            Ok::<_, vinfra_store::StoreError>((resp.succeeded, ()))
        });
        if let Err(e) = done {
            tracing::warn!("event not recorded: {}", vinfra_types::error::Chain(&e));
        }
    }

    /// Runs `txn` with the operations that append `event` (and delete the oldest beyond
    /// [`MAX_EVENTS`]), under the log's lock; the log counts the event only when `txn` answers
    /// that it committed (`(true, _)`). Without an event, `txn` gets no operations.
    pub fn appending<T, E>(
        &self,
        event: Option<Event>,
        txn: impl FnOnce(Vec<Op>) -> Result<(bool, T), E>,
    ) -> Result<T, E> {
        let Some(event) = event else {
            return txn(vec![]).map(|(_, t)| t);
        };
        let value = match keys::encode(&event) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("event not recorded: {}", vinfra_types::error::Chain(&e));
                return txn(vec![]).map(|(_, t)| t);
            }
        };
        let mut log = lock(&self.log);
        let key = keys::event_key(log.next);
        let mut ops = vec![Op::Put {
            key: key.clone(),
            value,
            lease: 0,
        }];
        let trimmed = (log.keys.len() + 1).saturating_sub(MAX_EVENTS);
        for old in log.keys.iter().take(trimmed) {
            ops.push(Op::Delete { key: old.clone() });
        }
        let (committed, out) = txn(ops)?;
        if committed {
            tracing::info!(
                kind = event.kind,
                object = event.object,
                actor = event.actor.as_ref().map(ToString::to_string),
                "{}",
                event.message
            );
            log.next += 1;
            log.keys.push_back(key);
            for _ in 0..trimmed {
                log.keys.pop_front();
            }
        }
        Ok(out)
    }

    /// The stored history, oldest first.
    pub fn list(store: &dyn Store) -> Result<Vec<Event>, RecordError> {
        Ok(keys::range::<Event>(store, keys::EVENTS)?
            .into_iter()
            .map(|(key, v)| Event {
                seq: key.parse().unwrap_or_default(),
                ..v.value
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_name_the_actor_in_force_and_spawned_work_keeps_it() {
        assert_eq!(
            event("vm", "a", "x").actor,
            Some(Actor::controller(CONSOLE_ACTOR))
        );
        let (here, spawned) = acting(Actor::token("alice"), async {
            let spawned = tokio::spawn(inherit(async { event("vm", "a", "y") }));
            (event("vm", "a", "x"), spawned.await.unwrap())
        })
        .await;
        assert_eq!(here.actor, Some(Actor::token("alice")));
        assert_eq!(spawned.actor, Some(Actor::token("alice")));
        let plain = acting(Actor::controller("ha"), async {
            tokio::spawn(async { event("vm", "a", "z") }).await.unwrap()
        })
        .await;
        assert_eq!(
            plain.actor,
            Some(Actor::controller(CONSOLE_ACTOR)),
            "a task spawned without inherit starts with no actor"
        );
    }
}
