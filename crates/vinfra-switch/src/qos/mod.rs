//! Quality of service: the pure parts of the daemon's rate limits and priorities.
//!
//! - [`TokenBucket`]: a rate in bits per second and a burst in bytes; shapes a port's reading
//!   (what a VM sends) and its output queue (what goes to it).
//! - [`Scheduler`]: a port's output queue, items tagged with the class and weight of the port
//!   they came from; strict priority between classes, deficit round robin by weight within a
//!   class, bounded in bytes and items with drops reported to the caller.
//!
//! Neither reads a clock nor does I/O: time is a [`core::time::Duration`] the caller gives,
//! from an origin of its choosing.

mod bucket;
mod class;
mod scheduler;

pub use bucket::TokenBucket;
pub use class::Class;
pub use scheduler::{Limits, Pushed, Scheduler, Source, QUANTUM_PER_WEIGHT};
