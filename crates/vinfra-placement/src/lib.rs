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
//! - [`quoted`]: name lists as messages show them.
//! - [`host`]: a host and a VM as placement sees them ([`HostInput`], [`VmRequest`]).
//! - [`rules`]: affinity, anti-affinity, run-on and not-on rules, must or should; contradictory
//!   rule sets are refused.
//! - [`fit`]: host fit in one place: host capabilities ([`HostCaps`]), VM needs ([`VmNeeds`]),
//!   the one check and its typed reason ([`Unfit`]), the explanation when no host fits
//!   ([`NoHost`]).
//! - [`place`]: plain placement, by a linear scan ([`place()`]) or an index ([`Cluster`]).
//! - [`violations`]: broken rules, hosts over capacity, VMs on hosts in maintenance or on hosts
//!   that do not fit them.
//! - [`model`]: [`ClusterModel`] (hosts, running VMs with allocation and measured demand, rules,
//!   traffic matrix).
//! - `state` (private): the model indexed for O(1) move evaluation; answers the model's queries.
//! - [`balance()`]: a migration [`Plan`] whose every [`Move`] says why; [`greedy`]: a plain greedy
//!   balancer to compare with.
//! - [`placer`]: placement under rules and fit ([`RulePlacer`], [`place_under_rules`]): which
//!   host takes a new VM, may this host take it, where does a running VM migrate to.
#![deny(unsafe_code)]

pub mod balance;
pub mod fit;
pub mod greedy;
pub mod host;
pub mod imbalance;
pub mod model;
pub mod place;
pub mod placer;
pub mod quoted;
pub mod rules;
mod state;
pub mod traffic;
pub mod violations;

pub use balance::{
    balance, balance_with_fit, BalanceConfig, BalanceError, Gain, LevelParams, Move, Plan, Reason,
    RecentMove, Tradeoff,
};
pub use fit::{FitTable, HostCaps, NoHost, OverlayMtu, Reserve, Shortfall, Unfit, VmNeeds};
pub use host::{Eligibility, HostInput, Placement, VmRequest};
pub use model::{ClusterModel, HostModel, ModelError, TrafficFlow, VmModel};
pub use place::{place, Cluster, PlacementError};
pub use placer::{place_under_rules, FitError, RulePlacer, Target};
pub use quoted::Quoted;
pub use rules::{Constraint, Emptiness, Rule, RuleError, Strength};
pub use violations::{Misfit, RuleViolation, Violations};
