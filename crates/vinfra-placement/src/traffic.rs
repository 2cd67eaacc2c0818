//! East-west traffic: bytes per second between VMs on different hosts. Traffic between VMs on
//! one host never touches the network; the balancer may co-locate heavy talkers to cut the
//! cross-host part, when capacity and rules allow and the move pays for its memory copy.

/// Sum of the flows `(vm a, vm b, bytes/s)` whose two VMs run on different hosts (`at`: host
/// of each VM), bytes/s.
pub(crate) fn cross_host(flows: &[(u32, u32, u64)], at: &[u32]) -> u64 {
    flows
        .iter()
        .filter(|&&(a, b, _)| at[a as usize] != at[b as usize])
        .fold(0u64, |acc, &(_, _, bytes)| acc.saturating_add(bytes))
}
