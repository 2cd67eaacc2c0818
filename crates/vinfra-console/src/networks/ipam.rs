//! The address management of VM NICs: [`assign`] settles each NIC's address and MAC and plans
//! their claims, [`release`] plans giving them back; either runs in the same store transaction
//! as the VM record (or cleanup marker) it serves. Call both under the networks lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use vinfra_store::{Compare, Op};
use vinfra_types::network::{self as net, Ipv4Subnet};
use vinfra_types::vm::{NicVlanError, SpecError};
use vinfra_types::NicSpec;

use crate::error::{Error, Object, RouterRefusal};
use crate::state::records::{
    self as keys, CleanupRecord, IpamEntry, MacClaim, NetworkRecord, Versioned,
};
use crate::state::{Console, Writes};

/// Settles the address and MAC of each NIC of a new VM (filling them into `nics`) and plans
/// their claims: the network records' IPAM and one MAC claim per NIC, compared against the
/// revisions read.
pub fn assign(
    console: &Console,
    vm: &str,
    vm_id: Uuid,
    nics: &mut [NicSpec],
) -> Result<Writes, Error> {
    if nics.is_empty() {
        return Ok(Writes::default());
    }
    console.with_networks(|mirror| assign_in(mirror, vm, vm_id, nics))
}

fn assign_in(
    mirror: &BTreeMap<String, Versioned<NetworkRecord>>,
    vm: &str,
    vm_id: Uuid,
    nics: &mut [NicSpec],
) -> Result<Writes, Error> {
    let mut macs: HashMap<[u8; 6], String> = HashMap::new();
    for r in mirror.values() {
        for e in r.value.ipam.values() {
            if let Ok(m) = net::parse_mac(&e.mac) {
                macs.insert(m, e.vm.clone());
            }
        }
    }
    let mut touched: BTreeMap<String, Versioned<NetworkRecord>> = BTreeMap::new();
    let mut plan = Writes::default();
    let mut new_macs = vec![];
    for index in 0..nics.len() {
        // A sub-interface uses its NIC's MAC (settled already: its NIC comes first).
        let parent_mac = nics[index]
            .vlan
            .and_then(|v| nics.get(v.parent))
            .and_then(|p| p.mac.clone());
        let nic = &mut nics[index];
        let name = nic.network.clone();
        if !touched.contains_key(&name) {
            let rec = mirror
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::not_found(Object::Network, &name))?;
            touched.insert(name.clone(), rec);
        }
        let Some(rec) = touched.get_mut(&name) else {
            continue;
        };
        let network = &rec.value.network;
        let corrupt = |field| Error::CorruptNetwork {
            network: name.clone(),
            field,
        };
        let subnet = Ipv4Subnet::parse(&network.subnet).map_err(|_| corrupt("subnet"))?;
        let gateway: Option<Ipv4Addr> = match &network.gateway {
            Some(g) => Some(g.parse().map_err(|_| corrupt("gateway"))?),
            None => None,
        };
        let reserved = &rec.value.reserved;
        let ipam = &mut rec.value.ipam;
        let ip = match &nic.ip {
            Some(text) => {
                let ip: Ipv4Addr = text.trim().parse().map_err(|_| Error::NicAddress {
                    index,
                    text: text.clone(),
                })?;
                if !subnet.contains(ip) {
                    return Err(Error::NicOutsideSubnet {
                        index,
                        ip,
                        subnet,
                        network: name,
                    });
                }
                if ip == subnet.network() || ip == subnet.broadcast() {
                    return Err(Error::NicSubnetAddress { index, ip, subnet });
                }
                if Some(ip) == gateway {
                    return Err(Error::NicGateway {
                        index,
                        ip,
                        network: name,
                    });
                }
                if let Some(holder) = reserved.get(&ip.to_string()) {
                    return Err(RouterRefusal::NicAddressReserved {
                        index,
                        ip,
                        network: name,
                        holder: holder.clone(),
                    }
                    .into());
                }
                if let Some(holder) = ipam.get(&ip.to_string()) {
                    return Err(if holder.vm == vm {
                        Error::NicAddressTwice { index, ip }
                    } else {
                        Error::NicAddressTaken {
                            index,
                            ip,
                            network: name,
                            holder: holder.vm.clone(),
                        }
                    });
                }
                ip
            }
            None => subnet
                .usable()
                .find(|a| {
                    let text = a.to_string();
                    Some(*a) != gateway
                        && !ipam.contains_key(&text)
                        && !reserved.contains_key(&text)
                })
                .ok_or_else(|| Error::NetworkFull {
                    network: name.clone(),
                    subnet,
                })?,
        };
        let mac = match (&parent_mac, &nic.mac) {
            (Some(theirs), mine) => {
                let theirs =
                    net::parse_mac(theirs).map_err(|source| Error::NicMac { index, source })?;
                if let Some(mine) = mine {
                    if net::parse_mac(mine.trim()).ok() != Some(theirs) {
                        return Err(SpecError::NicVlan {
                            index,
                            error: NicVlanError::Mac(net::format_mac(theirs)),
                        }
                        .into());
                    }
                }
                theirs
            }
            (None, Some(text)) => {
                let mac = net::parse_mac(text.trim())
                    .map_err(|source| Error::NicMac { index, source })?;
                if let Some(holder) = macs.get(&mac) {
                    let mac = net::format_mac(mac);
                    return Err(if holder == vm {
                        Error::NicMacTwice { index, mac }
                    } else {
                        Error::NicMacTaken {
                            index,
                            mac,
                            holder: holder.clone(),
                        }
                    });
                }
                mac
            }
            (None, None) => {
                derive_mac(vm_id, index, |m| macs.contains_key(m)).ok_or(Error::NoFreeMac)?
            }
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
        // One claim per MAC: its NIC's holds a sub-interface's.
        if parent_mac.is_none() {
            new_macs.push((mac_text.clone(), name.clone()));
        }
        nic.ip = Some(ip.to_string());
        nic.mac = Some(mac_text);
        nic.port_security = Some(nic.port_security());
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
        plan.networks.push((name, rec.value));
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

/// Plans the release of every address and MAC VM `vm` holds.
pub fn release(console: &Console, vm: &str) -> Result<Writes, Error> {
    console.with_networks(|mirror| {
        let mut plan = Writes::default();
        // A sub-interface's address shares its NIC's MAC (and claim): each deleted once.
        let mut macs = BTreeSet::new();
        for (name, rec) in mirror.iter() {
            if !rec.value.ipam.values().any(|e| e.vm == vm) {
                continue;
            }
            let mut value = rec.value.clone();
            value.ipam.retain(|_, e| {
                if e.vm == vm {
                    macs.insert(e.mac.clone());
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
            plan.networks.push((name.clone(), value));
        }
        for mac in macs {
            plan.ops.push(Op::Delete {
                key: keys::mac_key(&mac),
            });
        }
        Ok(plan)
    })
}

/// The VM of the cleanup marker `key` is gone from its host (or can no longer be removed
/// through it): removes the marker, if it is still the one read, and releases the VM's
/// addresses and MACs, in one transaction. False when the marker changed or went meanwhile.
pub async fn release_cleanup(
    console: &Console,
    key: &str,
    marker: &Versioned<CleanupRecord>,
) -> Result<bool, Error> {
    let _networks = console.inflight().networks_lock().await;
    let plan = release(console, &marker.value.vm)?;
    console.remove_cleanup(key, marker.mod_revision, plan)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
