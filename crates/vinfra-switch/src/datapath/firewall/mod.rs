//! The distributed firewall: security-group rules and connection tracking ([`conntrack`]).
pub mod conntrack;
