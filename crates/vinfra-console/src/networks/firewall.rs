//! The firewalls of a host's VM NICs ([`nic_firewalls`]), part of its switch configuration:
//! pure, over the security groups and the VM records, so equal records give equal firewalls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use vinfra_proto::{SwitchFirewallRule, SwitchNicFirewall};
use vinfra_types::security_group::{SecurityGroup, SgRemote};

use crate::state::records::VmRecord;

/// The addresses of every NIC in each group, cluster-wide (every VM, whatever its host or
/// power state), as prefixes: each NIC's address (a /32) and its allowed address pairs (an
/// address or prefix it may send from, a virtual IP say), since its traffic may come from
/// those. NICs without a (valid) address add only their pairs.
pub fn group_members(vms: &[VmRecord]) -> BTreeMap<&str, BTreeSet<(Ipv4Addr, u8)>> {
    let mut out: BTreeMap<&str, BTreeSet<(Ipv4Addr, u8)>> = BTreeMap::new();
    for vm in vms {
        for nic in &vm.spec.nics {
            if nic.security_groups.is_empty() {
                continue;
            }
            let own = nic
                .ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                .map(|ip| (ip, 32));
            let pairs = nic.allowed_addresses.iter().filter_map(|p| p.prefix());
            let prefixes: Vec<(Ipv4Addr, u8)> = own.into_iter().chain(pairs).collect();
            for g in &nic.security_groups {
                out.entry(g.as_str())
                    .or_default()
                    .extend(prefixes.iter().copied());
            }
        }
    }
    out
}

/// The firewall of every NIC on `host` (its VM placed there, or arriving by one of the
/// migrations in flight, `(VM, destination)` in `incoming`) that is in at least one security
/// group: the rules of its groups, each remote group expanded to the addresses of every NIC in
/// that group and their allowed address pairs ([`group_members`]), so a change of a group's members changes the rules of every NIC
/// whose rules name it. A group a NIC names that does not exist adds no rule (the NIC is still
/// filtered: ingress denied). NICs without a MAC are skipped. Sorted: firewalls by network and
/// MAC, rules by group and id, remotes by address.
pub fn nic_firewalls(
    host: &str,
    groups: &[SecurityGroup],
    vms: &[VmRecord],
    incoming: &[(String, String)],
) -> Vec<SwitchNicFirewall> {
    let by_name: HashMap<&str, &SecurityGroup> =
        groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let members = group_members(vms);
    let arriving: BTreeSet<&str> = incoming
        .iter()
        .filter(|(_, to)| to == host)
        .map(|(vm, _)| vm.as_str())
        .collect();
    let mut out = Vec::new();
    for vm in vms {
        if vm.host != host && !arriving.contains(vm.spec.name.as_str()) {
            continue;
        }
        for nic in &vm.spec.nics {
            let Some(mac) = &nic.mac else { continue };
            if nic.security_groups.is_empty() {
                continue;
            }
            let names: BTreeSet<&str> = nic.security_groups.iter().map(String::as_str).collect();
            let mut rules = Vec::new();
            for g in names.into_iter().filter_map(|n| by_name.get(n)) {
                for r in &g.rules {
                    let remotes = match r.remote() {
                        Some(SgRemote::Cidr(ip, len)) => vec![(ip, len)],
                        Some(SgRemote::Group(other)) => {
                            members.get(other).into_iter().flatten().copied().collect()
                        }
                        // Refused by validation; never stored.
                        None => continue,
                    };
                    rules.push(SwitchFirewallRule {
                        direction: r.direction,
                        protocol: r.protocol.number(),
                        ports: r.ports.map(|p| (p.first, p.last)),
                        remotes,
                        action: r.action,
                        group: g.name.clone(),
                        rule_id: r.id,
                    });
                }
            }
            rules.sort_by(|a, b| (&a.group, a.rule_id).cmp(&(&b.group, b.rule_id)));
            out.push(SwitchNicFirewall {
                network: nic.network.clone(),
                mac: mac.to_ascii_lowercase(),
                rules,
            });
        }
    }
    out.sort_by(|a, b| (&a.network, &a.mac).cmp(&(&b.network, &b.mac)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use uuid::Uuid;
    use vinfra_types::security_group::{SgAction, SgDirection, SgRule};
    use vinfra_types::{BootSource, NicSpec, VmSpec};

    use crate::state::records::DesiredPower;

    /// A VM on `host` with one NIC per `(network, ip, mac, groups)`.
    fn vm(name: &str, host: &str, nics: &[(&str, &str, &str, &[&str])]) -> VmRecord {
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
                    .map(|(n, ip, mac, groups)| NicSpec {
                        network: n.to_string(),
                        ip: Some(ip.to_string()),
                        mac: Some(mac.to_string()),
                        security_groups: groups.iter().map(|g| g.to_string()).collect(),
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

    fn rule(id: u32, json: &str) -> SgRule {
        let mut r: SgRule = serde_json::from_str(json).unwrap();
        r.validate().unwrap();
        r.id = id;
        r
    }

    fn group(name: &str, rules: Vec<SgRule>) -> SecurityGroup {
        SecurityGroup {
            name: name.into(),
            description: None,
            rules,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// `web` lets in tcp 80 from anywhere and everything from `admin`; `db` lets in tcp 5432
    /// from `web` and denies egress to `admin`; `admin` has no rules.
    fn groups() -> Vec<SecurityGroup> {
        vec![
            group(
                "web",
                vec![
                    rule(2, r#"{"direction":"ingress","remote_group":"admin"}"#),
                    rule(
                        1,
                        r#"{"direction":"ingress","protocol":"tcp","ports":"80","remote_cidr":"0.0.0.0/0"}"#,
                    ),
                ],
            ),
            group(
                "db",
                vec![
                    rule(
                        1,
                        r#"{"direction":"ingress","protocol":"tcp","ports":"5432","remote_group":"web"}"#,
                    ),
                    rule(
                        3,
                        r#"{"direction":"egress","remote_group":"admin","action":"deny"}"#,
                    ),
                ],
            ),
            group("admin", vec![]),
        ]
    }

    fn layout() -> Vec<VmRecord> {
        vec![
            vm(
                "w1",
                "h1",
                &[("blue", "10.0.0.11", "02:76:66:00:00:0B", &["web"])],
            ),
            vm(
                "w2",
                "h2",
                &[("blue", "10.0.0.12", "02:76:66:00:00:0c", &["web"])],
            ),
            vm(
                "d1",
                "h1",
                &[
                    ("blue", "10.0.0.21", "02:76:66:00:00:15", &["db"]),
                    ("back", "10.1.0.21", "02:76:66:00:00:16", &[]),
                ],
            ),
            vm(
                "a1",
                "h3",
                &[("blue", "10.0.0.31", "02:76:66:00:00:1f", &["admin", "web"])],
            ),
            vm(
                "plain",
                "h1",
                &[("blue", "10.0.0.41", "02:76:66:00:00:29", &[])],
            ),
        ]
    }

    #[test]
    fn remote_groups_expand_to_every_member_cluster_wide() {
        let vms = layout();
        let members = group_members(&vms);
        assert_eq!(
            members["web"].iter().copied().collect::<Vec<_>>(),
            [
                (ip("10.0.0.11"), 32),
                (ip("10.0.0.12"), 32),
                (ip("10.0.0.31"), 32)
            ],
            "members on every host"
        );
        let h1 = nic_firewalls("h1", &groups(), &vms, &[]);
        // d1's second NIC and `plain` are in no group: not filtered, not listed.
        let nics: Vec<(&str, &str)> = h1
            .iter()
            .map(|f| (f.network.as_str(), f.mac.as_str()))
            .collect();
        assert_eq!(
            nics,
            [("blue", "02:76:66:00:00:0b"), ("blue", "02:76:66:00:00:15")]
        );
        let w1 = &h1[0];
        assert_eq!(
            w1.rules,
            [
                SwitchFirewallRule {
                    direction: SgDirection::Ingress,
                    protocol: Some(6),
                    ports: Some((80, 80)),
                    remotes: vec![(Ipv4Addr::UNSPECIFIED, 0)],
                    action: SgAction::Allow,
                    group: "web".into(),
                    rule_id: 1,
                },
                SwitchFirewallRule {
                    direction: SgDirection::Ingress,
                    protocol: None,
                    ports: None,
                    remotes: vec![(ip("10.0.0.31"), 32)],
                    action: SgAction::Allow,
                    group: "web".into(),
                    rule_id: 2,
                },
            ]
        );
        let d1 = &h1[1];
        assert_eq!(d1.rules.len(), 2);
        assert_eq!(
            d1.rules[0].remotes,
            [
                (ip("10.0.0.11"), 32),
                (ip("10.0.0.12"), 32),
                (ip("10.0.0.31"), 32)
            ]
        );
        assert_eq!(
            (
                d1.rules[1].action,
                d1.rules[1].direction,
                d1.rules[1].rule_id
            ),
            (SgAction::Deny, SgDirection::Egress, 3)
        );
        // A NIC in two groups gets both groups' rules (an empty group adds none).
        let h3 = nic_firewalls("h3", &groups(), &vms, &[]);
        assert_eq!(h3.len(), 1);
        assert!(h3[0].rules.iter().all(|r| r.group == "web"));
        assert_eq!(h3[0].rules.len(), 2);

        // Equal inputs, equal output (whatever the record order).
        let mut shuffled = vms.clone();
        shuffled.reverse();
        let mut g = groups();
        g.reverse();
        assert_eq!(nic_firewalls("h1", &g, &shuffled, &[]), h1);
    }

    #[test]
    fn a_members_allowed_address_pairs_are_group_members_too() {
        let mut vms = layout();
        // w2 may also send from a virtual IP and a small prefix (a keepalived pair, say).
        vms[1].spec.nics[0].allowed_addresses = vec![
            vinfra_types::AllowedAddressPair {
                ip: "10.0.0.100".into(),
                mac: None,
            },
            vinfra_types::AllowedAddressPair {
                ip: "10.0.9.0/29".into(),
                mac: Some("02:76:66:00:00:99".into()),
            },
        ];
        // …and so may `plain`, in no group: its pairs are nobody's members.
        vms[4].spec.nics[0].allowed_addresses = vec![vinfra_types::AllowedAddressPair {
            ip: "10.0.0.200".into(),
            mac: None,
        }];
        let members = group_members(&vms);
        assert_eq!(
            members["web"].iter().copied().collect::<Vec<_>>(),
            [
                (ip("10.0.0.11"), 32),
                (ip("10.0.0.12"), 32),
                (ip("10.0.0.31"), 32),
                (ip("10.0.0.100"), 32),
                (ip("10.0.9.0"), 29)
            ]
        );
        let h1 = nic_firewalls("h1", &groups(), &vms, &[]);
        let d1 = h1.iter().find(|f| f.mac == "02:76:66:00:00:15").unwrap();
        assert!(
            d1.rules[0].remotes.contains(&(ip("10.0.9.0"), 29)),
            "db's rule naming web: {:?}",
            d1.rules[0]
        );
        assert!(!members.values().flatten().any(|p| p.0 == ip("10.0.0.200")));
    }

    #[test]
    fn membership_changes_reach_every_nic_that_names_the_group() {
        let mut vms = layout();
        let before = nic_firewalls("h1", &groups(), &vms, &[]);
        // w2 (on h2) leaves web: d1's rule from web on h1 loses its address.
        vms[1].spec.nics[0].security_groups.clear();
        let after = nic_firewalls("h1", &groups(), &vms, &[]);
        assert_ne!(before, after);
        assert_eq!(
            after[1].rules[0].remotes,
            [(ip("10.0.0.11"), 32), (ip("10.0.0.31"), 32)]
        );
        // a1 leaves admin: web's rule from admin matches nothing.
        vms[3].spec.nics[0].security_groups = vec!["web".into()];
        let after = nic_firewalls("h1", &groups(), &vms, &[]);
        assert!(after[0].rules[1].remotes.is_empty());
        // A group that does not exist adds no rule, and the NIC is still listed (filtered).
        vms[0].spec.nics[0].security_groups = vec!["gone".into()];
        let after = nic_firewalls("h1", &groups(), &vms, &[]);
        assert_eq!(after[0].mac, "02:76:66:00:00:0b");
        assert!(after[0].rules.is_empty());
    }

    #[test]
    fn a_vm_arriving_brings_its_firewall() {
        let vms = layout();
        assert!(nic_firewalls("h4", &groups(), &vms, &[]).is_empty());
        let incoming = vec![("w2".to_string(), "h4".to_string())];
        let h4 = nic_firewalls("h4", &groups(), &vms, &incoming);
        assert_eq!(h4.len(), 1);
        assert_eq!(h4[0].mac, "02:76:66:00:00:0c");
        // Its source keeps it until the switchover.
        let h2 = nic_firewalls("h2", &groups(), &vms, &incoming);
        assert_eq!(h2, h4);
    }
}
