//! Pure placement and balancing: picks a host for a VM from capacity and allocation ratios, and
//! plans live migrations that keep a cluster balanced under rules. No I/O.
//!
//! A host's allocatable vCPUs are `floor(cores × cpu ratio)`, its allocatable memory
//! `floor(memory × memory ratio)`. A VM fits a host when the host's allocation plus the VM stays
//! within both. Among the eligible hosts (connected, not in maintenance) that fit, placement
//! spreads: it picks the one with the most free memory after placement, then the most free vCPUs,
//! then the smallest name. Same input, same answer.
//!
//! Modules, from the bottom up (a module only imports modules above it in this list):
//!
//! - [`imbalance`]: normalized host load and the imbalance measure; [`traffic`]: cross-host
//!   east-west traffic.
//! - [`host`]: a host and a VM as plain placement sees them ([`HostInput`], [`Request`]).
//! - [`rules`]: affinity, anti-affinity, run-on and not-on rules, must or should; contradictory
//!   rule sets are refused.
//! - [`place`]: plain placement, by a linear scan ([`place()`]) or an index ([`Cluster`]).
//! - [`violations`]: broken rules, hosts over capacity, VMs on hosts in maintenance.
//! - [`model`]: [`ClusterModel`] (hosts, running VMs with allocation and measured demand, rules,
//!   traffic matrix).
//! - `state` (private): the model indexed for O(1) move evaluation; answers the model's queries.
//! - [`balance()`]: a migration [`Plan`] whose every [`Move`] says why; [`greedy`]: a plain greedy
//!   balancer to compare with.
//! - [`placer`]: placement under rules ([`place_with_rules`], [`RulePlacer`]).
#![deny(unsafe_code)]

pub mod balance;
pub mod greedy;
pub mod host;
pub mod imbalance;
pub mod model;
pub mod place;
pub mod placer;
pub mod rules;
mod state;
pub mod traffic;
pub mod violations;

pub use balance::{
    balance, BalanceConfig, BalanceError, Gain, LevelParams, Move, Plan, Reason, RecentMove,
};
pub use host::{Eligibility, HostInput, Placement, Request};
pub use model::{ClusterModel, Flow, HostModel, ModelError, VmModel};
pub use place::{place, Cluster, PlacementError};
pub use placer::{place_with_rules, RulePlacementError, RulePlacer};
pub use rules::{Rule, RuleError, RuleKind, Strength};
pub use violations::{RuleViolation, Violations};
