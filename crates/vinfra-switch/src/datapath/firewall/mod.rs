//! The distributed firewall: security-group rules ([`rules`]) and connection tracking.
pub mod rules;
