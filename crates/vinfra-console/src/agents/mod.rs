//! The agent side of the console: the endpoint agents dial, joins, and the registry of connected
//! agents through which the core sends commands.

pub mod history;
pub mod listener;
pub mod registry;

pub use listener::Membership;
pub use registry::{AgentRegistry, Observed, RequestError, HEARTBEAT_TIMEOUT};
