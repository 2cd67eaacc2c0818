//! The console's in-memory copy of the VM records ([`VmMirror`]), with the indexes its reads
//! use instead of a scan: by host, id, HA restart mark, network and security group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::records::{Versioned, VmRecord};

/// The VM records by name, and their names by host and by id (so that what a host holds, or
/// which record a reported VM has, is found without reading every record).
#[derive(Default)]
pub(super) struct VmMirror {
    pub(super) by_name: BTreeMap<String, Versioned<VmRecord>>,
    /// The VMs placed on each host, by name, with what the controllers check of each
    /// ([`OnHost`]: read without the record).
    pub(super) by_host: HashMap<String, BTreeMap<String, OnHost>>,
    /// The name and host of each VM by id: a reported VM is checked against its placement
    /// with one hash lookup (agents report every VM of theirs every few seconds).
    pub(super) by_id: foldhash::HashMap<uuid::Uuid, (String, String)>,
    /// The VMs with an HA restart mark, by the host the mark names (few, usually none).
    pub(super) failed_over: HashMap<String, BTreeSet<String>>,
    /// The VMs with a NIC on each network.
    pub(super) by_network: HashMap<String, BTreeSet<String>>,
    /// The VMs with a NIC in each security group.
    pub(super) by_group: HashMap<String, BTreeSet<String>>,
}

/// What the host index keeps of a VM placed there.
#[derive(Debug, Clone, Copy)]
pub(super) struct OnHost {
    /// The VM's id.
    pub(super) id: uuid::Uuid,
    /// Its desired power state.
    pub(super) desired: super::records::DesiredPower,
    /// Whether its HA is on.
    pub(super) ha: bool,
}

/// Adds `name` under `key` of an index of names.
fn index_add(index: &mut HashMap<String, BTreeSet<String>>, key: &str, name: &str) {
    if let Some(names) = index.get_mut(key) {
        names.insert(name.to_string());
    } else {
        index.insert(key.to_string(), BTreeSet::from([name.to_string()]));
    }
}

/// Removes `name` from under `key` of an index of names (and the key with its last name).
fn index_remove(index: &mut HashMap<String, BTreeSet<String>>, key: &str, name: &str) {
    if let Some(names) = index.get_mut(key) {
        names.remove(name);
        if names.is_empty() {
            index.remove(key);
        }
    }
}

impl VmMirror {
    /// The record of VM `name`.
    pub(super) fn get(&self, name: &str) -> Option<&Versioned<VmRecord>> {
        self.by_name.get(name)
    }

    /// Puts VM `name`'s record.
    pub(super) fn insert(&mut self, name: String, rec: Versioned<VmRecord>) {
        self.remove(&name);
        let on = OnHost {
            id: rec.value.id,
            desired: rec.value.desired,
            ha: rec.value.spec.ha.enabled,
        };
        self.by_host
            .entry(rec.value.host.clone())
            .or_default()
            .insert(name.clone(), on);
        self.by_id
            .insert(rec.value.id, (name.clone(), rec.value.host.clone()));
        if let Some(f) = &rec.value.failed_over {
            index_add(&mut self.failed_over, &f.from, &name);
        }
        for nic in &rec.value.spec.nics {
            index_add(&mut self.by_network, &nic.network, &name);
            for g in &nic.security_groups {
                index_add(&mut self.by_group, g, &name);
            }
        }
        self.by_name.insert(name, rec);
    }

    /// Removes VM `name`'s record.
    pub(super) fn remove(&mut self, name: &str) -> Option<Versioned<VmRecord>> {
        let old = self.by_name.remove(name)?;
        if let Some(on) = self.by_host.get_mut(&old.value.host) {
            on.remove(name);
            if on.is_empty() {
                self.by_host.remove(&old.value.host);
            }
        }
        if self
            .by_id
            .get(&old.value.id)
            .is_some_and(|(n, _)| n == name)
        {
            self.by_id.remove(&old.value.id);
        }
        if let Some(f) = &old.value.failed_over {
            index_remove(&mut self.failed_over, &f.from, name);
        }
        for nic in &old.value.spec.nics {
            index_remove(&mut self.by_network, &nic.network, name);
            for g in &nic.security_groups {
                index_remove(&mut self.by_group, g, name);
            }
        }
        Some(old)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use uuid::Uuid;
    use vinfra_types::{BootSource, NicSpec, VmSpec};

    use crate::state::records::DesiredPower;

    /// A VM on `host` with one NIC per `(network, ip, mac)`.
    pub(crate) fn vm(name: &str, host: &str, nics: &[(&str, &str, &str)]) -> VmRecord {
        VmRecord {
            id: Uuid::new_v4(),
            spec: VmSpec {
                name: name.into(),
                vcpus: 1,
                memory_mib: 128,
                boot: BootSource::Disk,
                disks: vec![],
                nics: nics
                    .iter()
                    .map(|(n, ip, mac)| NicSpec {
                        network: n.to_string(),
                        ip: Some(ip.to_string()),
                        mac: Some(mac.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ha: Default::default(),
            },
            host: host.into(),
            desired: DesiredPower::Stopped,
            created_at: 0,
            started_at: None,
            failed_over: None,
            restarts: 0,
            slot: None,
            platform: None,
        }
    }

    fn names(index: &HashMap<String, BTreeSet<String>>, key: &str) -> Vec<String> {
        index.get(key).into_iter().flatten().cloned().collect()
    }

    #[test]
    fn network_and_group_indexes_follow_every_put_and_removal() {
        let mut m = VmMirror::default();
        let mut a = vm("a", "h1", &[("blue", "10.0.0.1", "02:00:00:00:00:01")]);
        a.spec.nics[0].security_groups = vec!["web".into()];
        let b = vm(
            "b",
            "h2",
            &[
                ("blue", "10.0.0.2", "02:00:00:00:00:02"),
                ("red", "10.1.0.2", "02:00:00:00:00:03"),
            ],
        );
        let put = |m: &mut VmMirror, r: &VmRecord| {
            m.insert(
                r.spec.name.clone(),
                Versioned {
                    value: r.clone(),
                    mod_revision: 1,
                },
            )
        };
        put(&mut m, &a);
        put(&mut m, &b);
        assert_eq!(names(&m.by_network, "blue"), ["a", "b"]);
        assert_eq!(names(&m.by_network, "red"), ["b"]);
        assert_eq!(names(&m.by_group, "web"), ["a"]);
        // A changed record moves in every index: a's NIC to red, out of web.
        a.spec.nics[0].network = "red".into();
        a.spec.nics[0].security_groups = vec!["db".into()];
        put(&mut m, &a);
        assert_eq!(names(&m.by_network, "blue"), ["b"]);
        assert_eq!(names(&m.by_network, "red"), ["a", "b"]);
        assert!(!m.by_group.contains_key("web"));
        assert_eq!(names(&m.by_group, "db"), ["a"]);
        m.remove("b");
        m.remove("a");
        assert!(m.by_network.is_empty() && m.by_group.is_empty() && m.by_host.is_empty());
    }
}
