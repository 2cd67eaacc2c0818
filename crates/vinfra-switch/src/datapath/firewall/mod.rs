//! The distributed firewall: security-group rules ([`rules`]) and connection tracking
//! ([`conntrack`]), both pure; the switch evaluates them at a VM's port on the host where the VM
//! runs (see [`super::ConfigCommand::SetPortFirewall`]).
pub mod conntrack;
pub mod rules;
