//! The agent's `GET /metrics` (docs/design.md, "Metrics"): the host's VMs, the agent's
//! console session and the host's switch, in the Prometheus text format.
//!
//! - [`names`]: the metric families.
//! - [`snapshot`]: what a scrape shows ([`ScrapeSnapshot`]).
//! - [`render`]: a [`ScrapeSnapshot`] into the text, family by family.
//! - [`text`]: the Prometheus text format, written into one `String` (escaping included).
//! - [`scrape`]: the snapshot read now from the manager, the console contact, `/proc` and the
//!   switch (one `get_counters` request), each part within a bound.
//! - [`serve`]: the HTTP listener (`vinfra agent --metrics-listen`), on a management or
//!   loopback address only.
//!
//! Every value is read at the scrape from what the agent already keeps (the VMs' latest
//! observations, the contact's counters) or asks for once (the switch's counters, each running
//! QEMU's `/proc/<pid>/io`): nothing is recorded between scrapes, so a scrape writes the text
//! from its snapshot alone, and a VM that is gone has no series any more.

pub mod names;
pub mod render;
#[cfg(test)]
mod render_tests;
pub mod scrape;
pub mod serve;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod text;

pub use render::render;
pub use scrape::scrape;
pub use serve::{bind, serve, MetricsError};
pub use snapshot::{ScrapeSnapshot, SwitchSample};
