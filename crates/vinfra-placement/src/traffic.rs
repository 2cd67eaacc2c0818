//! East-west traffic: bytes per second between VMs on different hosts. Traffic between VMs on
//! one host never touches the network; the balancer may co-locate heavy talkers to cut the
//! cross-host part, when capacity and rules allow and the move pays for its memory copy.

use crate::state::State;

/// Sum of the flows whose two VMs run on different hosts, bytes/s.
pub(crate) fn cross_host(s: &State) -> u64 {
    s.flows
        .iter()
        .filter(|&&(a, b, _)| s.at[a as usize] != s.at[b as usize])
        .fold(0u64, |acc, &(_, _, bytes)| acc.saturating_add(bytes))
}
