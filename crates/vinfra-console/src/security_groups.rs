//! Security groups (`/vinfra/security-groups/<name>`): list, show (with the NICs in the group
//! and the groups whose rules name it), create (with initial rules), delete (refused while a
//! NIC is in it or another group's rule names it), rule add (the console assigns the id: stable,
//! never reused in the group) and rule delete; and the check that the groups a NIC names exist.
//!
//! Every change is one compare-and-swap transaction with its event. The checks that a group
//! exists (a NIC's groups, a rule's remote group) or is unused (delete) and the writes that
//! depend on them hold the security-group lock, so a group never goes while something names
//! it. Each change is pushed to the hosts' switches by the switch controller, which watches the
//! groups' prefix (the rules of a NIC on any host may name the group).

use std::collections::{BTreeMap, BTreeSet};

use vinfra_types::filter::{ListFilter, SecurityGroupFilter};
use vinfra_types::security_group::{
    SecurityGroup, SecurityGroupError, SecurityGroupSummary, SgMember, SgRule, MAX_RULES,
};
use vinfra_types::NicSpec;

use crate::error::{Error, Object};
use crate::state::events::event;
use crate::state::records::{now_s, SecurityGroupRecord, Versioned, VmRecord};
use crate::state::Console;

/// Most NICs a refused delete names.
const NAMED_USERS: usize = 5;

/// The kind of the groups' events.
const EVENT_KIND: &str = "security-group";

/// Every NIC in each group, by group name (VM name order, then NIC index).
fn members(console: &Console) -> BTreeMap<String, Vec<SgMember>> {
    console.with_vms(|vms| {
        let mut out: BTreeMap<String, Vec<SgMember>> = BTreeMap::new();
        for v in vms.values() {
            members_of(&v.value, &mut out);
        }
        out
    })
}

fn members_of(vm: &VmRecord, out: &mut BTreeMap<String, Vec<SgMember>>) {
    for (nic, n) in vm.spec.nics.iter().enumerate() {
        for g in &n.security_groups {
            out.entry(g.clone()).or_default().push(SgMember {
                vm: vm.spec.name.clone(),
                nic,
                network: n.network.clone(),
                ip: n.ip.clone(),
            });
        }
    }
}

/// The groups (by name) with a rule whose remote_group is `name`.
fn referencing<'a>(
    name: &str,
    groups: impl IntoIterator<Item = &'a SecurityGroupRecord>,
) -> Vec<String> {
    groups
        .into_iter()
        .filter(|g| {
            g.group
                .rules
                .iter()
                .any(|r| r.remote_group.as_deref() == Some(name))
        })
        .map(|g| g.group.name.clone())
        .collect()
}

fn summary(
    rec: &SecurityGroupRecord,
    all: &[Versioned<SecurityGroupRecord>],
    members: &BTreeMap<String, Vec<SgMember>>,
) -> SecurityGroupSummary {
    let name = rec.group.name.as_str();
    SecurityGroupSummary {
        group: rec.group.clone(),
        members: members.get(name).cloned().unwrap_or_default(),
        referenced_by: referencing(name, all.iter().map(|v| &v.value)),
        created_at: rec.created_at,
    }
}

/// Every group, in name order, or those `filter` lets through.
pub fn list(
    console: &Console,
    filter: &SecurityGroupFilter,
) -> Result<Vec<SecurityGroupSummary>, Error> {
    let all = console.security_groups()?;
    let members = members(console);
    Ok(all
        .iter()
        .map(|v| summary(&v.value, &all, &members))
        .filter(|g| filter.lets(g))
        .collect())
}

/// One group.
pub fn show(console: &Console, name: &str) -> Result<SecurityGroupSummary, Error> {
    let rec = console.security_group(name)?;
    let all = console.security_groups()?;
    Ok(summary(&rec.value, &all, &members(console)))
}

fn bad_name(source: vinfra_types::NameError) -> Error {
    Error::BadName {
        field: "security group name",
        source,
    }
}

/// Checks that the remote group of `rule` exists (or is `own`, the group the rule is in).
/// Hold the security-group lock.
fn check_remote(console: &Console, own: &str, rule: &SgRule) -> Result<(), Error> {
    match rule.remote_group.as_deref() {
        Some(g) if g != own => match console.security_group(g) {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::UnknownRemoteGroup {
                remote: g.to_string(),
            }),
            Err(e) => Err(e),
        },
        _ => Ok(()),
    }
}

/// Creates a group, its rules numbered from 1. A taken name is [`Error::NameTaken`], a rule
/// whose remote group does not exist (other than the group itself)
/// [`Error::UnknownRemoteGroup`]; nothing is stored on a refusal.
pub async fn create(
    console: &Console,
    mut group: SecurityGroup,
) -> Result<SecurityGroupSummary, Error> {
    group.validate()?;
    let _groups = console.inflight().security_groups_lock().await;
    let name = group.name.clone();
    let taken = || Error::NameTaken {
        kind: Object::SecurityGroup,
        name: name.clone(),
    };
    match console.security_group(&name) {
        Ok(_) => return Err(taken()),
        Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    for r in &group.rules {
        check_remote(console, &name, r)?;
    }
    let mut next = 1;
    for r in &mut group.rules {
        r.id = next;
        next += 1;
    }
    let rec = SecurityGroupRecord {
        group,
        next_rule_id: next,
        created_at: now_s(),
    };
    let n = rec.group.rules.len();
    let told = event(
        EVENT_KIND,
        &name,
        format!("created with {n} rule{}", if n == 1 { "" } else { "s" }),
    );
    if !console.write_security_group(&name, None, Some(&rec), Some(told))? {
        return Err(taken());
    }
    let all = console.security_groups()?;
    Ok(summary(&rec, &all, &members(console)))
}

/// Deletes a group; refused ([`Error::SecurityGroupInUse`]) while a NIC is in it or another
/// group's rule names it as its remote.
pub async fn delete(console: &Console, name: &str) -> Result<(), Error> {
    vinfra_types::validate_name(name).map_err(bad_name)?;
    let _groups = console.inflight().security_groups_lock().await;
    let cur = console.security_group(name)?;
    let all = console.security_groups()?;
    let groups: Vec<String> = referencing(name, all.iter().map(|v| &v.value))
        .into_iter()
        .filter(|g| g != name)
        .collect();
    let nics: Vec<String> = members(console)
        .remove(name)
        .unwrap_or_default()
        .into_iter()
        .map(|m| format!("{} nic {}", m.vm, m.nic))
        .collect();
    if !nics.is_empty() || !groups.is_empty() {
        let more = nics.len().saturating_sub(NAMED_USERS);
        return Err(Error::SecurityGroupInUse {
            group: name.to_string(),
            nics: nics.into_iter().take(NAMED_USERS).collect(),
            more,
            groups,
        });
    }
    let told = event(EVENT_KIND, name, "deleted");
    if !console.write_security_group(name, Some(cur.mod_revision), None, Some(told))? {
        return Err(Error::Concurrent {
            kind: Object::SecurityGroup,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Adds a rule to group `name`; returns it with its id (the group's next). A remote group that
/// does not exist is [`Error::UnknownRemoteGroup`].
pub async fn add_rule(console: &Console, name: &str, mut rule: SgRule) -> Result<SgRule, Error> {
    vinfra_types::validate_name(name).map_err(bad_name)?;
    rule.validate()?;
    let _groups = console.inflight().security_groups_lock().await;
    let cur = console.security_group(name)?;
    check_remote(console, name, &rule)?;
    let mut rec = cur.value;
    if rec.group.rules.len() >= MAX_RULES {
        return Err(SecurityGroupError::TooManyRules.into());
    }
    rule.id = rec.next_rule_id;
    rec.next_rule_id += 1;
    rec.group.rules.push(rule.clone());
    let told = event(
        EVENT_KIND,
        name,
        format!("rule {} added: {}", rule.id, rule.describe()),
    );
    if !console.write_security_group(name, Some(cur.mod_revision), Some(&rec), Some(told))? {
        return Err(Error::Concurrent {
            kind: Object::SecurityGroup,
            name: name.to_string(),
        });
    }
    Ok(rule)
}

/// Deletes rule `id` of group `name` ([`Error::NoSuchSgRule`] when it has none).
pub async fn delete_rule(console: &Console, name: &str, id: u32) -> Result<(), Error> {
    vinfra_types::validate_name(name).map_err(bad_name)?;
    let cur = console.security_group(name)?;
    let mut rec = cur.value;
    let Some(at) = rec.group.rules.iter().position(|r| r.id == id) else {
        return Err(Error::NoSuchSgRule {
            group: name.to_string(),
            id,
        });
    };
    let rule = rec.group.rules.remove(at);
    let told = event(
        EVENT_KIND,
        name,
        format!("rule {id} deleted: {}", rule.describe()),
    );
    if !console.write_security_group(name, Some(cur.mod_revision), Some(&rec), Some(told))? {
        return Err(Error::Concurrent {
            kind: Object::SecurityGroup,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks that every security group the NICs name exists ([`Error::UnknownNicGroup`] names the
/// first that does not). Hold the security-group lock until the NICs are written.
pub fn check_nics<'a>(
    console: &Console,
    nics: impl IntoIterator<Item = (usize, &'a NicSpec)>,
) -> Result<(), Error> {
    let mut known: Option<BTreeSet<String>> = None;
    for (index, nic) in nics {
        for g in &nic.security_groups {
            let known = match &mut known {
                Some(k) => k,
                None => known.insert(
                    console
                        .security_groups()?
                        .into_iter()
                        .map(|v| v.value.group.name)
                        .collect(),
                ),
            };
            if !known.contains(g) {
                return Err(Error::UnknownNicGroup {
                    index,
                    group: g.clone(),
                });
            }
        }
    }
    Ok(())
}
