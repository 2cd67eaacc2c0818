//! The lab network: an underlay namespace with a Linux bridge, and one namespace per host joined
//! to the bridge by a veth pair. Addresses are in 10.77.0.0/24; no namespace has a default route,
//! and the root namespace is never touched.

use std::net::Ipv4Addr;
use std::process::Command;

/// Address of the bridge in the underlay namespace (the console's agent endpoint).
pub const UNDERLAY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Prefix length of the lab subnet.
pub const PREFIX: u8 = 24;
/// Port of the console's agent endpoint in the underlay namespace.
pub const AGENT_PORT: u16 = 7444;

/// Why setting up or tearing down the lab network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The `ip` command could not be run at all.
    #[error("cannot run 'ip {args}'")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    /// An `ip` command failed.
    #[error("'ip {args}' failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Name of the underlay namespace of lab `lab`.
pub fn underlay_ns(lab: &str) -> String {
    format!("vl-{lab}-ul")
}

/// Name of the namespace of host `index` (1-based) of lab `lab`.
pub fn host_ns(lab: &str, index: usize) -> String {
    format!("vl-{lab}-h{index}")
}

/// Address of host `index` (1-based): 10.77.0.(10 + index).
pub fn host_addr(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 77, 0, last)
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', "; ");
    Err(NetError::Failed {
        args: joined,
        stderr,
    })
}

/// Names of the existing namespaces that belong to lab `lab`.
pub fn lab_namespaces(lab: &str) -> Vec<String> {
    let prefix = format!("vl-{lab}-");
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest == "ul" || is_host_suffix(rest))
        })
        .collect();
    names.sort();
    names
}

fn is_host_suffix(rest: &str) -> bool {
    rest.strip_prefix('h')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates the underlay namespace with its bridge and `hosts` host namespaces.
pub fn create(lab: &str, hosts: usize) -> Result<(), NetError> {
    let ul = underlay_ns(lab);
    let bridge_addr = format!("{UNDERLAY_ADDR}/{PREFIX}");
    ip(&["netns", "add", &ul])?;
    ip(&["-n", &ul, "link", "set", "lo", "up"])?;
    ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &ul, "addr", "add", &bridge_addr, "dev", "br0"])?;
    ip(&["-n", &ul, "link", "set", "br0", "up"])?;
    for i in 1..=hosts {
        let ns = host_ns(lab, i);
        let peer = format!("h{i}");
        let addr = format!("{}/{PREFIX}", host_addr(i));
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
            &ul,
        ])?;
        ip(&["-n", &ul, "link", "set", &peer, "master", "br0"])?;
        ip(&["-n", &ul, "link", "set", &peer, "up"])?;
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// Deletes every namespace of lab `lab` (the veth pairs and the bridge go with them).
/// Returns the first error but tries every namespace.
pub fn destroy(lab: &str) -> Result<(), NetError> {
    let mut first = None;
    for ns in lab_namespaces(lab) {
        if let Err(e) = ip(&["netns", "del", &ns]) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(underlay_ns("lab"), "vl-lab-ul");
        assert_eq!(host_ns("lab", 2), "vl-lab-h2");
        assert_eq!(host_addr(1), Ipv4Addr::new(10, 77, 0, 11));
        assert!(is_host_suffix("h12"));
        assert!(!is_host_suffix("h"));
        assert!(!is_host_suffix("hx"));
    }
}
