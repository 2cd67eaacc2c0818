//! The console <-> agent protocol.
//!
//! An agent dials the console's agent endpoint over mutual TLS (its client certificate's common name
//! is its host name) and keeps one connection open. Both directions carry [`frame`]s: a 4-byte
//! big-endian length and a JSON document, at most [`frame::MAX_FRAME`] bytes.
//!
//! - The agent speaks first with [`AgentMessage::Hello`], then sends [`AgentMessage::Heartbeat`]
//!   every second (liveness, from a task that waits on nothing else), [`AgentMessage::Report`]
//!   (the host's state) every few seconds when it changed, every fourth time regardless (the
//!   moving values: use, uptimes, traffic), and after commands unless their answer said it
//!   all (the `answer` module), and answers each
//!   [`ConsoleMessage::Request`] with exactly one [`AgentMessage::Response`] carrying the same
//!   `id`.
//! - The console sends [`ConsoleMessage::Request`]s; several may be in flight at once. It answers
//!   each heartbeat at once with [`ConsoleMessage::HeartbeatAck`], and counts a host
//!   disconnected after its heartbeat timeout without any message from it.
//!
//! - Every 10 s an agent sends [`AgentMessage::Flows`]: the flows its switch counted since.
//!
//! [`pki`] holds the cluster CA, certificate issuance and the rustls configurations both ends use.
#![deny(unsafe_code)]

mod answer;
pub mod datadir;
mod decode;
pub mod flows;
pub mod frame;
pub mod messages;
pub mod migration_tls;
pub mod pki;
mod pki_base;
mod pki_lifecycle;
pub mod switch_config;

pub use answer::{AnswerEffect, UNCHANGED_REPORT_EVERY};
pub use flows::HostFlow;
pub use messages::*;
