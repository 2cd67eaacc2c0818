//! Logical networks (docs/design.md, "Networks"): create, list, show and delete them; the address
//! management of VM NICs, written in the same store transaction as the VM record it serves; and
//! [`switch_config`], what one host's virtual switch needs to know.
//!
//! Every change of a network or of its addresses happens under [`Networks::lock`], from the
//! decision to the write, and the write compares the revisions it read: the in-memory mirror and
//! the store never disagree about who holds an address, a MAC, a VNI or a VLAN ID.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use vinfra_proto::{
    AgentCommand, AgentError, CommandReply, HostSwitchConfig, SwitchArpEntry, SwitchDhcp,
    SwitchMacEntry, SwitchNetwork, SwitchNetworkKind,
};
use vinfra_store::{Compare, Op, Store, Txn};
use vinfra_types::network::{
    self as net, CreateNetworkRequest, HostSwitchCounters, Ipv4Subnet, Network, NetworkCounters,
    NetworkHostCounters, NetworkKind, NetworkPort, NetworkPortCounters, NetworkSummary,
    NetworkTotal,
};
use vinfra_types::{BootSource, NicSpec, VmSpec};

use crate::agents::RequestError;
use crate::core::{Console, CoreError};
use crate::store_keys::{
    self as keys, now_s, HostRecord, IpamEntry, MacClaim, NetworkRecord, RecordError, SegmentClaim,
    Versioned, VmRecord,
};

/// The networks: the mirror of their records and the lock that serializes their changes.
pub struct Networks {
    lock: tokio::sync::Mutex<()>,
    mirror: RwLock<BTreeMap<String, Versioned<NetworkRecord>>>,
}

/// Store comparisons and operations that claim or release NIC addresses, to run in the same
/// transaction as the VM record; and the network records they write, mirrored once it commits.
#[derive(Debug, Default)]
pub struct NicPlan {
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
    records: Vec<(String, NetworkRecord)>,
    /// Prefix length of each NIC's subnet, in NIC order (empty for a release).
    prefixes: Vec<u8>,
}

impl NicPlan {
    /// A plan that claims and releases nothing: only `ops` (checked by `compare`), to run in the
    /// same transaction as a VM record.
    pub fn other_writes(compare: Vec<Compare>, ops: Vec<Op>) -> Self {
        NicPlan {
            compare,
            ops,
            ..NicPlan::default()
        }
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn corrupt(name: &str, what: impl std::fmt::Display) -> CoreError {
    CoreError::Invalid(format!("network '{name}' is stored with a bad {what}"))
}

impl Networks {
    /// Loads every network record.
    pub fn load(store: &dyn Store) -> Result<Self, RecordError> {
        let mirror = keys::range::<NetworkRecord>(store, keys::NETWORKS)?
            .into_iter()
            .collect();
        Ok(Networks {
            lock: tokio::sync::Mutex::new(()),
            mirror: RwLock::new(mirror),
        })
    }

    /// Takes the lock: hold it from reading the address management until the write.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Every network record, in name order.
    pub fn records(&self) -> Vec<NetworkRecord> {
        read(&self.mirror)
            .values()
            .map(|v| v.value.clone())
            .collect()
    }

    fn get(&self, name: &str) -> Option<Versioned<NetworkRecord>> {
        read(&self.mirror).get(name).cloned()
    }

    /// Re-reads every record (after a transaction lost a comparison).
    pub fn reload(&self, store: &dyn Store) {
        match keys::range::<NetworkRecord>(store, keys::NETWORKS) {
            Ok(all) => *write(&self.mirror) = all.into_iter().collect(),
            Err(e) => tracing::error!("reloading the networks: {e}"),
        }
    }

    /// Mirrors the records a committed plan wrote.
    pub fn applied(&self, plan: NicPlan, revision: i64) {
        let mut mirror = write(&self.mirror);
        for (name, value) in plan.records {
            mirror.insert(
                name,
                Versioned {
                    value,
                    mod_revision: revision,
                },
            );
        }
    }

    /// Settles the address and MAC of each NIC of a new VM (filling them into `nics`) and plans
    /// their claims. Call under [`Networks::lock`].
    pub fn assign_nics(
        &self,
        vm: &str,
        vm_id: Uuid,
        nics: &mut [NicSpec],
    ) -> Result<NicPlan, CoreError> {
        let mirror = read(&self.mirror);
        let mut macs: HashMap<[u8; 6], String> = HashMap::new();
        for r in mirror.values() {
            for e in r.value.ipam.values() {
                if let Ok(m) = net::parse_mac(&e.mac) {
                    macs.insert(m, e.vm.clone());
                }
            }
        }
        let mut touched: BTreeMap<String, Versioned<NetworkRecord>> = BTreeMap::new();
        let mut plan = NicPlan::default();
        let mut new_macs = vec![];
        for (index, nic) in nics.iter_mut().enumerate() {
            let name = nic.network.clone();
            if !touched.contains_key(&name) {
                let rec = mirror.get(&name).cloned().ok_or(CoreError::NotFound {
                    kind: "network",
                    name: name.clone(),
                })?;
                touched.insert(name.clone(), rec);
            }
            let Some(rec) = touched.get_mut(&name) else {
                continue;
            };
            let network = &rec.value.network;
            let subnet =
                Ipv4Subnet::parse(&network.subnet).map_err(|e| corrupt(&name, e.to_string()))?;
            let gateway: Option<Ipv4Addr> = match &network.gateway {
                Some(g) => Some(g.parse().map_err(|_| corrupt(&name, "gateway"))?),
                None => None,
            };
            let ipam = &mut rec.value.ipam;
            let ip = match &nic.ip {
                Some(text) => {
                    let ip: Ipv4Addr = text.trim().parse().map_err(|_| {
                        CoreError::Invalid(format!("nic {index}: '{text}' is not an IPv4 address"))
                    })?;
                    if !subnet.contains(ip) {
                        return Err(CoreError::Invalid(format!(
                            "nic {index}: {ip} is outside the subnet {subnet} of network '{name}'"
                        )));
                    }
                    if ip == subnet.network() || ip == subnet.broadcast() {
                        return Err(CoreError::Invalid(format!(
                            "nic {index}: {ip} is the network or broadcast address of {subnet}"
                        )));
                    }
                    if Some(ip) == gateway {
                        return Err(CoreError::Invalid(format!(
                            "nic {index}: {ip} is reserved for the gateway of network '{name}'"
                        )));
                    }
                    if let Some(holder) = ipam.get(&ip.to_string()) {
                        return Err(CoreError::Conflict(if holder.vm == vm {
                            format!("nic {index}: {ip} is given to two NICs of this VM")
                        } else {
                            format!(
                                "nic {index}: {ip} on network '{name}' is taken by VM '{}'",
                                holder.vm
                            )
                        }));
                    }
                    ip
                }
                None => subnet
                    .usable()
                    .find(|a| Some(*a) != gateway && !ipam.contains_key(&a.to_string()))
                    .ok_or_else(|| {
                        CoreError::Conflict(format!(
                            "network '{name}' ({subnet}) has no free address left"
                        ))
                    })?,
            };
            let mac = match &nic.mac {
                Some(text) => {
                    let mac = net::parse_mac(text.trim())
                        .map_err(|e| CoreError::Invalid(format!("nic {index}: {e}")))?;
                    if let Some(holder) = macs.get(&mac) {
                        return Err(CoreError::Conflict(if holder == vm {
                            format!(
                                "nic {index}: MAC {} is given to two NICs of this VM",
                                net::format_mac(mac)
                            )
                        } else {
                            format!(
                                "nic {index}: MAC {} is taken by VM '{holder}'",
                                net::format_mac(mac)
                            )
                        }));
                    }
                    mac
                }
                None => derive_mac(vm_id, index, |m| macs.contains_key(m)).ok_or_else(|| {
                    CoreError::Conflict("no free MAC address left in 02:76:66:00:00:00/24".into())
                })?,
            };
            macs.insert(mac, vm.to_string());
            let mac_text = net::format_mac(mac);
            ipam.insert(
                ip.to_string(),
                IpamEntry {
                    vm: vm.to_string(),
                    nic: index,
                    mac: mac_text.clone(),
                },
            );
            new_macs.push((mac_text.clone(), name.clone()));
            nic.ip = Some(ip.to_string());
            nic.mac = Some(mac_text);
            plan.prefixes.push(subnet.prefix());
        }
        for (name, rec) in touched {
            let key = keys::network_key(&name);
            plan.compare
                .push(Compare::mod_revision(key.clone(), rec.mod_revision));
            plan.ops.push(Op::Put {
                key,
                value: keys::encode(&rec.value)?,
                lease: 0,
            });
            plan.records.push((name, rec.value));
        }
        for (mac, network) in new_macs {
            let key = keys::mac_key(&mac);
            plan.compare.push(Compare::absent(key.clone()));
            plan.ops.push(Op::Put {
                key,
                value: keys::encode(&MacClaim {
                    vm: vm.to_string(),
                    network,
                })?,
                lease: 0,
            });
        }
        Ok(plan)
    }

    /// Plans the release of every address and MAC a VM holds. Call under [`Networks::lock`].
    pub fn release_nics(&self, vm: &str) -> Result<NicPlan, CoreError> {
        let mirror = read(&self.mirror);
        let mut plan = NicPlan::default();
        for (name, rec) in mirror.iter() {
            if !rec.value.ipam.values().any(|e| e.vm == vm) {
                continue;
            }
            let mut value = rec.value.clone();
            value.ipam.retain(|_, e| {
                if e.vm == vm {
                    plan.ops.push(Op::Delete {
                        key: keys::mac_key(&e.mac),
                    });
                    false
                } else {
                    true
                }
            });
            let key = keys::network_key(name);
            plan.compare
                .push(Compare::mod_revision(key.clone(), rec.mod_revision));
            plan.ops.push(Op::Put {
                key,
                value: keys::encode(&value)?,
                lease: 0,
            });
            plan.records.push((name.clone(), value));
        }
        Ok(plan)
    }
}

/// A MAC for NIC `index` of the VM `vm_id`: `02:76:66` and three bytes of a hash of both, the
/// next free one after it when taken.
fn derive_mac(vm_id: Uuid, index: usize, taken: impl Fn(&[u8; 6]) -> bool) -> Option<[u8; 6]> {
    let mut h = Sha256::new();
    h.update(b"vinfra-nic-mac");
    h.update(vm_id.as_bytes());
    h.update((index as u64).to_be_bytes());
    let d = h.finalize();
    let start = u32::from_be_bytes([0, d[0], d[1], d[2]]);
    (0..1u32 << 24).find_map(|i| {
        let n = (start + i) & 0x00ff_ffff;
        let [_, a, b, c] = n.to_be_bytes();
        let [p, q, r] = net::MAC_PREFIX;
        let mac = [p, q, r, a, b, c];
        (!taken(&mac)).then_some(mac)
    })
}

/// For the lab guest: direct kernel boot gets `vinfra.ip=<ip>/<prefix>` of the first NIC, unless
/// the command line already has a `vinfra.ip=`. The lab guest's init configures eth0 from it.
pub fn add_lab_guest_ip(spec: &mut VmSpec, plan: &NicPlan) {
    let (Some(nic), Some(prefix)) = (spec.nics.first(), plan.prefixes.first()) else {
        return;
    };
    let Some(ip) = nic.ip.clone() else {
        return;
    };
    if let BootSource::Kernel { cmdline, .. } = &mut spec.boot {
        if !cmdline
            .split_whitespace()
            .any(|a| a.starts_with("vinfra.ip="))
        {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(&format!("vinfra.ip={ip}/{prefix}"));
        }
    }
}

/// Creates a network: checks it, settles its VNI or VLAN ID (the lowest free one from
/// [`net::AUTO_VNI_START`] / [`net::AUTO_VLAN_START`] when not given) and stores it with its
/// claim in one transaction.
pub async fn create(
    console: &Console,
    request: CreateNetworkRequest,
) -> Result<NetworkSummary, CoreError> {
    let (subnet, gateway, mtu) =
        net::check_request(&request).map_err(|e| CoreError::Invalid(e.to_string()))?;
    let nets = &console.networks;
    let _lock = nets.lock().await;
    let name = request.name.clone();
    if nets.get(&name).is_some() {
        return Err(CoreError::Conflict(format!(
            "a network named '{name}' already exists"
        )));
    }
    let kind = request.kind;
    let (label, wanted, first, last) = match kind {
        NetworkKind::Overlay => ("vni", request.vni, net::AUTO_VNI_START, net::MAX_VNI),
        NetworkKind::Vlan => (
            "vlan_id",
            request.vlan_id,
            net::AUTO_VLAN_START,
            net::MAX_VLAN_ID,
        ),
    };
    let (used, switch_ids) = {
        let mirror = read(&nets.mirror);
        let used: BTreeMap<u32, String> = mirror
            .values()
            .filter(|r| r.value.network.kind == kind)
            .filter_map(|r| segment_of(&r.value.network).map(|s| (s, r.value.network.name.clone())))
            .collect();
        let ids: BTreeSet<u16> = mirror.values().map(|r| r.value.switch_id).collect();
        (used, ids)
    };
    let switch_id = (1..=u16::MAX)
        .find(|i| !switch_ids.contains(i))
        .ok_or_else(|| CoreError::Conflict("no free switch network number left".into()))?;
    let segment = match wanted {
        Some(s) => {
            if let Some(other) = used.get(&s) {
                return Err(CoreError::Conflict(format!(
                    "{label} {s} is already used by network '{other}'"
                )));
            }
            s
        }
        None => (first..=last)
            .find(|s| !used.contains_key(s))
            .ok_or_else(|| {
                CoreError::Conflict(format!("no free {label} left from {first} to {last}"))
            })?,
    };
    let network = Network {
        name: name.clone(),
        kind,
        vni: (kind == NetworkKind::Overlay).then_some(segment),
        vlan_id: (kind == NetworkKind::Vlan).then_some(segment),
        subnet: subnet.to_string(),
        gateway: gateway.map(|g| g.to_string()),
        mtu,
        created_at: now_s(),
    };
    let rec = NetworkRecord {
        network: network.clone(),
        switch_id,
        ipam: BTreeMap::new(),
    };
    let key = keys::network_key(&name);
    let claim = keys::encode(&SegmentClaim {
        network: name.clone(),
    })?;
    let mut compare = vec![Compare::absent(key.clone())];
    let mut success = vec![Op::Put {
        key,
        value: keys::encode(&rec)?,
        lease: 0,
    }];
    for k in [
        keys::segment_key(space(kind), segment),
        keys::segment_key("switch", u32::from(switch_id)),
    ] {
        compare.push(Compare::absent(k.clone()));
        success.push(Op::Put {
            key: k,
            value: claim.clone(),
            lease: 0,
        });
    }
    let resp = console.store().txn(Txn {
        compare,
        success,
        failure: vec![],
    })?;
    if !resp.succeeded {
        nets.reload(console.store().as_ref());
        return Err(CoreError::Conflict(format!(
            "network '{name}' or {label} {segment} was taken meanwhile; try again"
        )));
    }
    write(&nets.mirror).insert(
        name.clone(),
        Versioned {
            value: rec,
            mod_revision: resp.revision,
        },
    );
    console.event(
        "network",
        &name,
        format!(
            "created: {} {label} {segment}, subnet {subnet}, mtu {mtu}",
            kind.as_str()
        ),
    );
    Ok(NetworkSummary {
        network,
        ports: vec![],
    })
}

fn space(kind: NetworkKind) -> &'static str {
    match kind {
        NetworkKind::Overlay => "vni",
        NetworkKind::Vlan => "vlan",
    }
}

fn segment_of(n: &Network) -> Option<u32> {
    match n.kind {
        NetworkKind::Overlay => n.vni,
        NetworkKind::Vlan => n.vlan_id,
    }
}

/// VM name → host of every VM whose record is gone but that may still exist on that host (it
/// keeps its addresses until the host confirms its removal).
fn being_removed(console: &Console) -> BTreeMap<String, String> {
    match console.cleanups(None) {
        Ok(all) => all
            .into_iter()
            .map(|(_, m)| (m.value.vm, m.value.host))
            .collect(),
        Err(e) => {
            tracing::warn!("reading the cleanup markers: {e}");
            BTreeMap::new()
        }
    }
}

fn summary(console: &Console, rec: &NetworkRecord) -> NetworkSummary {
    let mut removing: Option<BTreeMap<String, String>> = None;
    let mut ports: Vec<NetworkPort> = rec
        .ipam
        .iter()
        .map(|(ip, e)| NetworkPort {
            vm: e.vm.clone(),
            nic: e.nic,
            host: console.vm(&e.vm).map(|v| v.value.host).unwrap_or_else(|_| {
                removing
                    .get_or_insert_with(|| being_removed(console))
                    .get(&e.vm)
                    .cloned()
                    .unwrap_or_default()
            }),
            mac: e.mac.clone(),
            ip: ip.clone(),
        })
        .collect();
    ports.sort_by(|a, b| (&a.vm, a.nic).cmp(&(&b.vm, b.nic)));
    NetworkSummary {
        network: rec.network.clone(),
        ports,
    }
}

/// Every network with its ports, in name order.
pub fn list(console: &Console) -> Vec<NetworkSummary> {
    console
        .networks
        .records()
        .iter()
        .map(|r| summary(console, r))
        .collect()
}

/// One network with its ports: for each VM NIC, the VM, its host, MAC and address.
pub fn show(console: &Console, name: &str) -> Result<NetworkSummary, CoreError> {
    let rec = console
        .networks
        .get(name)
        .ok_or_else(|| CoreError::NotFound {
            kind: "network",
            name: name.to_string(),
        })?;
    Ok(summary(console, &rec.value))
}

/// How long the console waits for a host's switch counters.
pub const COUNTERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The counters of a registered host's switch, read now through its agent
/// (`AgentCommand::SwitchCounters`, at most [`COUNTERS_TIMEOUT`]).
pub async fn host_switch_counters(
    console: &Console,
    host: &str,
) -> Result<HostSwitchCounters, CoreError> {
    console.host(host)?;
    Ok(ask_counters(console, host).await?)
}

async fn ask_counters(console: &Console, host: &str) -> Result<HostSwitchCounters, RequestError> {
    match console
        .agents()
        .request(host, AgentCommand::SwitchCounters, COUNTERS_TIMEOUT)
        .await?
    {
        CommandReply::SwitchCounters { counters } => Ok(counters),
        other => Err(RequestError::Agent {
            host: host.to_string(),
            source: AgentError::Host {
                detail: format!("unexpected reply {other:?}"),
            },
        }),
    }
}

/// A network's traffic: every host with a VM NIC on it is asked for its switch counters at the
/// same time (each within [`COUNTERS_TIMEOUT`]); the answers give each port's counters, each
/// host's counters for the network (ARP answers, floods and refused learning included) and
/// their sum over the hosts that answered. A host that is disconnected, fails or does not
/// answer in time has its ports (and itself) shown without counters, with the reason, rather
/// than failing the whole call (the total counts it as missing).
pub async fn counters(console: &Console, name: &str) -> Result<NetworkCounters, CoreError> {
    let summary = show(console, name)?;
    let hosts: BTreeSet<&str> = summary
        .ports
        .iter()
        .map(|p| p.host.as_str())
        .filter(|h| !h.is_empty())
        .collect();
    let answers: BTreeMap<&str, Result<HostSwitchCounters, String>> =
        futures::future::join_all(hosts.iter().map(|h| async move {
            (
                *h,
                ask_counters(console, h).await.map_err(|e| e.to_string()),
            )
        }))
        .await
        .into_iter()
        .collect();
    let ports = summary
        .ports
        .iter()
        .map(|p| {
            let found = match answers.get(p.host.as_str()) {
                None => Err("the VM is not placed on a host".to_string()),
                Some(Err(e)) => Err(e.clone()),
                Some(Ok(c)) => {
                    let id = console.vm(&p.vm).ok().map(|v| v.value.id);
                    c.ports
                        .iter()
                        .find(|c| Some(c.vm_id) == id && c.nic == p.nic)
                        .map(|c| c.traffic.clone())
                        .ok_or_else(|| {
                            format!(
                                "no port for this NIC on host '{}' (the VM does not run there)",
                                p.host
                            )
                        })
                }
            };
            let (counters, error) = match found {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            };
            NetworkPortCounters {
                port: p.clone(),
                counters,
                error,
            }
        })
        .collect();
    let mut total = NetworkTotal::default();
    let hosts = answers
        .iter()
        .map(|(host, answer)| match answer {
            Ok(c) => {
                // A switch without the network (no port of it there yet) counts nothing.
                let n = c
                    .networks
                    .iter()
                    .find(|n| n.network == name)
                    .cloned()
                    .unwrap_or_default();
                total.traffic.add(&n.traffic);
                total.arp_suppressed = total.arp_suppressed.saturating_add(n.arp_suppressed);
                total.flooded = total.flooded.saturating_add(n.flooded);
                total.learning_refused = total.learning_refused.saturating_add(n.learning_refused);
                total.hosts_counted = total.hosts_counted.saturating_add(1);
                NetworkHostCounters {
                    host: host.to_string(),
                    counters: Some(n.traffic),
                    arp_suppressed: Some(n.arp_suppressed),
                    flooded: Some(n.flooded),
                    learning_refused: Some(n.learning_refused),
                    error: None,
                }
            }
            Err(e) => {
                total.hosts_missing = total.hosts_missing.saturating_add(1);
                NetworkHostCounters {
                    host: host.to_string(),
                    counters: None,
                    arp_suppressed: None,
                    flooded: None,
                    learning_refused: None,
                    error: Some(e.clone()),
                }
            }
        })
        .collect();
    Ok(NetworkCounters {
        network: summary.network.name,
        ports,
        hosts,
        total,
    })
}

/// Deletes a network no VM has a NIC on (409 naming the VMs otherwise).
pub async fn delete(console: &Console, name: &str) -> Result<(), CoreError> {
    let nets = &console.networks;
    let _lock = nets.lock().await;
    let cur = nets.get(name).ok_or_else(|| CoreError::NotFound {
        kind: "network",
        name: name.to_string(),
    })?;
    let mut users: BTreeSet<String> = cur.value.ipam.values().map(|e| e.vm.clone()).collect();
    users.extend(
        console
            .vm_records()
            .into_iter()
            .filter(|v| v.spec.nics.iter().any(|n| n.network == name))
            .map(|v| v.spec.name),
    );
    if !users.is_empty() {
        let removing = being_removed(console);
        let shown: Vec<String> = users
            .iter()
            .take(10)
            .map(|vm| match removing.get(vm) {
                Some(host) => format!("{vm} (being removed from host {host})"),
                None => vm.clone(),
            })
            .collect();
        let more = users.len().saturating_sub(shown.len());
        return Err(CoreError::Conflict(format!(
            "network '{name}' is in use by VM{} {}{}; delete them first",
            if users.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )));
    }
    let key = keys::network_key(name);
    let mut ops = vec![
        Op::Delete { key: key.clone() },
        Op::Delete {
            key: keys::segment_key("switch", u32::from(cur.value.switch_id)),
        },
    ];
    if let Some(s) = segment_of(&cur.value.network) {
        ops.push(Op::Delete {
            key: keys::segment_key(space(cur.value.network.kind), s),
        });
    }
    let resp = console.store().txn(Txn {
        compare: vec![Compare::mod_revision(key, cur.mod_revision)],
        success: ops,
        failure: vec![],
    })?;
    if !resp.succeeded {
        nets.reload(console.store().as_ref());
        return Err(CoreError::Conflict(format!(
            "network '{name}' was changed concurrently; try again"
        )));
    }
    write(&nets.mirror).remove(name);
    console.event("network", name, "deleted");
    Ok(())
}

/// The switch configuration of one registered host, from the console's records; a VM being
/// migrated counts on its destination too.
pub fn host_switch_config(console: &Console, host: &str) -> Result<HostSwitchConfig, CoreError> {
    console.host(host)?;
    let migrating: Vec<(String, String)> = crate::core::lock(&console.migrations)
        .values()
        .map(|m| (m.vm.clone(), m.destination.clone()))
        .collect();
    Ok(switch_config(
        host,
        &console.host_records(),
        &console.networks.records(),
        &console.vm_records(),
        &migrating,
    ))
}

/// A VM NIC on a network, for [`switch_config`].
struct Port<'a> {
    vm: &'a str,
    /// The host its record names first, then the destinations of its migrations in flight.
    on: Vec<&'a str>,
    mac: &'a str,
    ip: &'a str,
}

/// The switch's DHCP responder for a network (`None` if its subnet does not parse). The server
/// identifier is the gateway when there is one, else the subnet's last usable address. Address
/// allocation starts from the lowest address, so that one is the last to be handed to a NIC; if
/// a NIC does hold it, guests still get their leases, with the server identifier equal to that
/// NIC's address.
fn switch_dhcp(n: &Network) -> Option<SwitchDhcp> {
    let subnet = Ipv4Subnet::parse(&n.subnet).ok()?;
    let gateway: Option<Ipv4Addr> = n.gateway.as_deref().and_then(|g| g.parse().ok());
    let last = u32::from(subnet.broadcast())
        .checked_sub(1)
        .map(Ipv4Addr::from)
        .filter(|a| subnet.is_usable(*a));
    let server = gateway.or(last)?;
    Some(SwitchDhcp {
        prefix_len: subnet.prefix(),
        gateway,
        server,
        mtu: u16::try_from(n.mtu).unwrap_or(u16::MAX),
    })
}

/// What `host`'s virtual switch needs from the console, computed from the records alone:
/// - `networks`: every network with a VM NIC on the host (or on the way to it: `incoming` lists
///   `(VM, destination host)` of migrations in flight), with its switch number, kind, MTU and,
///   for overlays, the flood list: the underlay addresses of the other hosts with ports on it;
/// - `macs`: for those overlay networks, each VM MAC on another host and that host's address
///   (VLAN networks reach other hosts through the trunk, which learns them);
/// - `arps`: for those networks, every VM address and its MAC (ARP suppression);
/// - each network's `dhcp`: the switch's DHCP responder, from the subnet, gateway and MTU
///   (server identifier: the gateway, else the subnet's last usable address).
///
/// The agent adds the ports of its own VMs' NICs and their MAC entries. A VM counts on the host
/// its record names, whatever its power state (a stopped VM's entries are harmless and ready for
/// its start). Hosts whose address is not IPv4 are left out of flood lists and MAC entries; NICs
/// without an address or MAC are skipped. The output is sorted, so equal inputs give equal
/// configurations.
pub fn switch_config(
    host: &str,
    hosts: &[HostRecord],
    networks: &[NetworkRecord],
    vms: &[VmRecord],
    incoming: &[(String, String)],
) -> HostSwitchConfig {
    let underlay: HashMap<&str, Ipv4Addr> = hosts
        .iter()
        .filter_map(|h| {
            h.address
                .parse::<Ipv4Addr>()
                .ok()
                .map(|a| (h.name.as_str(), a))
        })
        .collect();
    let own = underlay.get(host).copied();
    let arriving: BTreeSet<&str> = incoming
        .iter()
        .filter(|(_, to)| to == host)
        .map(|(vm, _)| vm.as_str())
        .collect();
    let extra: HashMap<&str, Vec<&str>> =
        incoming.iter().fold(HashMap::new(), |mut m, (vm, to)| {
            m.entry(vm.as_str()).or_default().push(to.as_str());
            m
        });
    let mut ports: BTreeMap<&str, Vec<Port>> = BTreeMap::new();
    for vm in vms {
        let mut on: Vec<&str> = vec![vm.host.as_str()];
        on.extend(extra.get(vm.spec.name.as_str()).into_iter().flatten());
        for nic in &vm.spec.nics {
            let (Some(ip), Some(mac)) = (&nic.ip, &nic.mac) else {
                continue;
            };
            ports.entry(nic.network.as_str()).or_default().push(Port {
                vm: vm.spec.name.as_str(),
                on: on.clone(),
                mac: mac.as_str(),
                ip: ip.as_str(),
            });
        }
    }
    let mut config = HostSwitchConfig::default();
    let mut sorted: Vec<&NetworkRecord> = networks.iter().collect();
    sorted.sort_by(|a, b| a.network.name.cmp(&b.network.name));
    for rec in sorted {
        let n = &rec.network;
        let Some(all) = ports.get(n.name.as_str()) else {
            continue;
        };
        if !all.iter().any(|p| p.on.contains(&host)) {
            continue;
        }
        let kind = match n.kind {
            NetworkKind::Overlay => SwitchNetworkKind::Overlay {
                vni: n.vni.unwrap_or(0),
            },
            NetworkKind::Vlan => SwitchNetworkKind::Vlan {
                vid: n.vlan_id.and_then(|v| u16::try_from(v).ok()).unwrap_or(0),
            },
        };
        let mut flood = vec![];
        if n.kind == NetworkKind::Overlay {
            for Port { vm, on, mac, .. } in all {
                for h in on.iter().filter(|h| **h != host) {
                    let Some(vtep) = underlay.get(h).copied() else {
                        continue;
                    };
                    if Some(vtep) != own {
                        flood.push(vtep);
                    }
                }
                // The MAC lives where the record says until the switchover; a VM arriving here
                // gets its local entry from this host's agent.
                let home = on[0];
                if home == host || arriving.contains(vm) {
                    continue;
                }
                if let Some(vtep) = underlay.get(home).copied().filter(|v| Some(*v) != own) {
                    config.macs.push(SwitchMacEntry {
                        network: n.name.clone(),
                        mac: mac.to_string(),
                        host_ip: vtep,
                    });
                }
            }
            flood.sort();
            flood.dedup();
        }
        for Port { mac, ip, .. } in all {
            if let Ok(ip) = ip.parse() {
                config.arps.push(SwitchArpEntry {
                    network: n.name.clone(),
                    ip,
                    mac: mac.to_string(),
                });
            }
        }
        config.networks.push(SwitchNetwork {
            name: n.name.clone(),
            id: rec.switch_id,
            kind,
            mtu: u16::try_from(n.mtu).unwrap_or(u16::MAX),
            flood,
            dhcp: switch_dhcp(n),
        });
    }
    config
        .macs
        .sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    config
        .arps
        .sort_by(|a, b| (&a.network, a.ip).cmp(&(&b.network, b.ip)));
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_keys::Desired;

    fn host(name: &str, address: &str) -> HostRecord {
        HostRecord {
            name: name.into(),
            address: address.into(),
            joined_at: 0,
            ratio_override: None,
            maintenance: false,
            capacity: None,
            accel: None,
            qemu_version: None,
            trunk: None,
            underlay_mtu: 1500,
        }
    }

    fn network(name: &str, kind: NetworkKind, segment: u32, switch_id: u16) -> NetworkRecord {
        NetworkRecord {
            network: Network {
                name: name.into(),
                kind,
                vni: (kind == NetworkKind::Overlay).then_some(segment),
                vlan_id: (kind == NetworkKind::Vlan).then_some(segment),
                subnet: "10.80.1.0/24".into(),
                gateway: None,
                mtu: 1450,
                created_at: 0,
            },
            switch_id,
            ipam: BTreeMap::new(),
        }
    }

    /// A VM on `host` with one NIC per `(network, ip, mac)`.
    fn vm(name: &str, host: &str, nics: &[(&str, &str, &str)]) -> VmRecord {
        VmRecord {
            id: Uuid::new_v4(),
            spec: VmSpec {
                name: name.into(),
                vcpus: 1,
                memory_mib: 128,
                boot: BootSource::Kernel {
                    kernel: "vmlinuz".into(),
                    initrd: None,
                    cmdline: "console=ttyS0".into(),
                },
                disks: vec![],
                nics: nics
                    .iter()
                    .map(|(n, ip, mac)| NicSpec {
                        network: n.to_string(),
                        ip: Some(ip.to_string()),
                        mac: Some(mac.to_string()),
                    })
                    .collect(),
            },
            host: host.into(),
            desired: Desired::Running,
            created_at: 0,
            started_at: None,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Three hosts; `blue` (overlay) has VMs on h1, h2 and h3; `red` (overlay, same subnet) on
    /// h1 and h3; `green` (VLAN) on h1 and h2; `empty` has none; `h` has no NIC.
    fn layout() -> (Vec<HostRecord>, Vec<NetworkRecord>, Vec<VmRecord>) {
        let hosts = vec![
            host("h1", "10.77.0.11"),
            host("h2", "10.77.0.12"),
            host("h3", "10.77.0.13"),
        ];
        let networks = vec![
            network("red", NetworkKind::Overlay, 10001, 2),
            network("blue", NetworkKind::Overlay, 10000, 1),
            network("green", NetworkKind::Vlan, 100, 3),
            network("empty", NetworkKind::Overlay, 10002, 4),
        ];
        let vms = vec![
            vm(
                "a",
                "h1",
                &[
                    ("blue", "10.80.1.1", "02:76:66:00:00:01"),
                    ("green", "10.80.1.1", "02:76:66:00:00:02"),
                ],
            ),
            vm("b", "h1", &[("blue", "10.80.1.2", "02:76:66:00:00:03")]),
            vm("c", "h2", &[("blue", "10.80.1.3", "02:76:66:00:00:04")]),
            vm("d", "h3", &[("blue", "10.80.1.4", "02:76:66:00:00:05")]),
            vm("e", "h3", &[("red", "10.80.1.1", "02:76:66:00:00:06")]),
            vm("f", "h1", &[("red", "10.80.1.2", "02:76:66:00:00:07")]),
            vm("g", "h2", &[("green", "10.80.1.2", "02:76:66:00:00:08")]),
            vm("h", "h3", &[]),
        ];
        (hosts, networks, vms)
    }

    fn names(c: &HostSwitchConfig) -> Vec<&str> {
        c.networks.iter().map(|n| n.name.as_str()).collect()
    }

    /// (network, MAC, VTEP) of every MAC entry.
    fn macs(c: &HostSwitchConfig) -> Vec<(&str, &str, Ipv4Addr)> {
        c.macs
            .iter()
            .map(|m| (m.network.as_str(), m.mac.as_str(), m.host_ip))
            .collect()
    }

    #[test]
    fn three_hosts() {
        let (hosts, networks, vms) = layout();

        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert_eq!(
            names(&h1),
            ["blue", "green", "red"],
            "only networks with ports on h1"
        );
        let blue = &h1.networks[0];
        assert_eq!(blue.id, 1);
        assert_eq!(blue.kind, SwitchNetworkKind::Overlay { vni: 10000 });
        assert_eq!(blue.mtu, 1450);
        assert_eq!(blue.flood, [ip("10.77.0.12"), ip("10.77.0.13")]);
        // No gateway: the responder takes the subnet's last usable address.
        assert_eq!(
            blue.dhcp,
            Some(SwitchDhcp {
                prefix_len: 24,
                gateway: None,
                server: ip("10.80.1.254"),
                mtu: 1450,
            })
        );
        // A VLAN network reaches other hosts through the trunk: no flood list, no VTEPs.
        let green = &h1.networks[1];
        assert_eq!(green.kind, SwitchNetworkKind::Vlan { vid: 100 });
        assert!(green.flood.is_empty());
        // The same subnet on another network: its own hosts only.
        assert_eq!(
            h1.networks[2].flood,
            [ip("10.77.0.13")],
            "only h3 has red ports"
        );
        assert_eq!(
            macs(&h1),
            [
                ("blue", "02:76:66:00:00:04", ip("10.77.0.12")),
                ("blue", "02:76:66:00:00:05", ip("10.77.0.13")),
                ("red", "02:76:66:00:00:06", ip("10.77.0.13")),
            ],
            "remote overlay MACs only; not a's, b's or f's (local), not g's (VLAN)"
        );
        let arps: Vec<(&str, Ipv4Addr, &str)> = h1
            .arps
            .iter()
            .map(|a| (a.network.as_str(), a.ip, a.mac.as_str()))
            .collect();
        assert_eq!(
            arps,
            [
                ("blue", ip("10.80.1.1"), "02:76:66:00:00:01"),
                ("blue", ip("10.80.1.2"), "02:76:66:00:00:03"),
                ("blue", ip("10.80.1.3"), "02:76:66:00:00:04"),
                ("blue", ip("10.80.1.4"), "02:76:66:00:00:05"),
                ("green", ip("10.80.1.1"), "02:76:66:00:00:02"),
                ("green", ip("10.80.1.2"), "02:76:66:00:00:08"),
                ("red", ip("10.80.1.1"), "02:76:66:00:00:06"),
                ("red", ip("10.80.1.2"), "02:76:66:00:00:07"),
            ]
        );

        let h2 = switch_config("h2", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h2), ["blue", "green"]);
        assert_eq!(h2.networks[0].flood, [ip("10.77.0.11"), ip("10.77.0.13")]);
        assert_eq!(
            macs(&h2),
            [
                ("blue", "02:76:66:00:00:01", ip("10.77.0.11")),
                ("blue", "02:76:66:00:00:03", ip("10.77.0.11")),
                ("blue", "02:76:66:00:00:05", ip("10.77.0.13")),
            ]
        );
        assert!(h2.arps.iter().all(|a| a.network != "red"));

        let h3 = switch_config("h3", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h3), ["blue", "red"]);
        assert_eq!(h3.networks[1].flood, [ip("10.77.0.11")]);
        assert_eq!(
            macs(&h3)
                .into_iter()
                .filter(|m| m.0 == "red")
                .collect::<Vec<_>>(),
            [("red", "02:76:66:00:00:07", ip("10.77.0.11"))]
        );

        // A host without ports gets nothing.
        let h4 = switch_config("h4", &hosts, &networks, &vms, &[]);
        assert_eq!(h4, HostSwitchConfig::default());
        // Equal inputs, equal output (whatever the record order).
        let mut shuffled = vms.clone();
        shuffled.reverse();
        assert_eq!(switch_config("h1", &hosts, &networks, &shuffled, &[]), h1);
    }

    #[test]
    fn migrations_and_odd_hosts() {
        let (mut hosts, networks, mut vms) = layout();
        // c migrates from h2 to h3: h3 already knows the network; h2 stays the MAC's home until
        // the switchover, and h3 does not get a remote entry for a VM arriving there.
        let incoming = vec![
            ("g".to_string(), "h3".to_string()),
            ("c".to_string(), "h3".to_string()),
        ];
        let h3 = switch_config("h3", &hosts, &networks, &vms, &incoming);
        assert_eq!(names(&h3), ["blue", "green", "red"], "g brings green to h3");
        assert!(macs(&h3).iter().all(|m| m.1 != "02:76:66:00:00:04"));
        let h1 = switch_config("h1", &hosts, &networks, &vms, &incoming);
        assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.12"))));

        // After the switchover the record names h3: every host's entry follows, and h2 leaves
        // blue's flood lists.
        vms.iter_mut().find(|v| v.spec.name == "c").unwrap().host = "h3".into();
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert_eq!(h1.networks[0].flood, [ip("10.77.0.13")]);
        assert!(macs(&h1).contains(&("blue", "02:76:66:00:00:04", ip("10.77.0.13"))));
        let h2 = switch_config("h2", &hosts, &networks, &vms, &[]);
        assert_eq!(names(&h2), ["green"]);

        // A host with a non-IPv4 address is not a VTEP.
        hosts[2].address = "fe80::1".into();
        let h1 = switch_config("h1", &hosts, &networks, &vms, &[]);
        assert!(h1.networks[0].flood.is_empty());
        assert!(macs(&h1).is_empty());
        assert_eq!(h1.arps.len(), 8, "ARP entries do not need a VTEP");
    }

    #[test]
    fn macs_are_derived_deterministically_and_skip_taken_ones() {
        let id = Uuid::new_v4();
        let a = derive_mac(id, 0, |_| false).unwrap();
        assert_eq!(a, derive_mac(id, 0, |_| false).unwrap());
        assert_eq!(a[..3], net::MAC_PREFIX);
        assert_ne!(a, derive_mac(id, 1, |_| false).unwrap());
        let b = derive_mac(id, 0, |m| *m == a).unwrap();
        assert_ne!(a, b);
        assert_eq!(b[..3], net::MAC_PREFIX);
        assert!(derive_mac(id, 0, |_| true).is_none());
    }

    #[test]
    fn the_lab_guest_gets_its_address_on_the_command_line() {
        let mut v = vm("a", "h1", &[("blue", "10.80.1.7", "02:76:66:00:00:01")]).spec;
        let plan = NicPlan {
            prefixes: vec![24],
            ..NicPlan::default()
        };
        add_lab_guest_ip(&mut v, &plan);
        let BootSource::Kernel { cmdline, .. } = &v.boot else {
            panic!()
        };
        assert_eq!(cmdline, "console=ttyS0 vinfra.ip=10.80.1.7/24");
        // Not twice, and never over the operator's own.
        add_lab_guest_ip(&mut v, &plan);
        let BootSource::Kernel { cmdline, .. } = &v.boot else {
            panic!()
        };
        assert_eq!(cmdline, "console=ttyS0 vinfra.ip=10.80.1.7/24");
        v.boot = BootSource::Disk;
        add_lab_guest_ip(&mut v, &plan);
        assert_eq!(v.boot, BootSource::Disk);
    }
}
