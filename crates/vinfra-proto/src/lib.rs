//! The console <-> agent protocol.
//!
//! An agent dials the console's agent endpoint over mutual TLS (its client certificate's common name
//! is its host name) and keeps one connection open. Both directions carry [`frame`]s: a 4-byte
//! big-endian length and a JSON document, at most [`frame::MAX_FRAME`] bytes.
//!
//! - The agent speaks first with [`AgentMessage::Hello`], then sends [`AgentMessage::Report`] every
//!   few seconds (the heartbeat), and answers each [`ConsoleMessage::Request`] with exactly one
//!   [`AgentMessage::Response`] carrying the same `id`.
//! - The console sends [`ConsoleMessage::Request`]s; several may be in flight at once.
//!
//! [`pki`] holds the cluster CA, certificate issuance and the rustls configurations both ends use.
#![deny(unsafe_code)]

pub mod frame;
pub mod messages;
pub mod pki;

pub use messages::*;
