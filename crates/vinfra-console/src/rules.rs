//! Placement rules (`/vinfra/rules/<name>`): list, show, create (checked against the cluster
//! and every other rule with `vinfra-placement` first; nothing is stored when refused), delete.
//! A rule may name VMs that do not exist yet: they follow it from their creation on. Each change
//! wakes the balancer, and placement reads the rules again at its next decision.

use vinfra_store::{Compare, Op, Txn};
use vinfra_types::balancing::{PlacementRule, RuleStrength};
use vinfra_types::filter::{ListFilter, RuleFilter};

use crate::error::{Error, Object};
use crate::fit;
use crate::state::records as keys;
use crate::state::Console;

/// Every stored rule, in name order, or those `filter` lets through.
pub fn list(console: &Console, filter: &RuleFilter) -> Result<Vec<PlacementRule>, Error> {
    let mut all = console.rules()?;
    all.retain(|r| filter.lets(r));
    Ok(all)
}

/// One stored rule.
pub fn show(console: &Console, name: &str) -> Result<PlacementRule, Error> {
    console.rule(name)
}

/// A rule in one line, for events.
fn describe(r: &PlacementRule) -> String {
    let strength = match r.strength {
        RuleStrength::Must => "must",
        RuleStrength::Should => "should",
    };
    let mut s = format!("{strength} {} of {}", r.kind.as_str(), r.vms.join(", "));
    if r.kind.names_hosts() {
        s.push_str(&format!(" on hosts {}", r.hosts.join(", ")));
    }
    s
}

/// Checks the shape of a rule: valid names, VMs and hosts present where they must be.
fn check_shape(r: &PlacementRule) -> Result<(), Error> {
    let name = |field, n: &str| {
        vinfra_types::validate_name(n).map_err(|source| Error::BadName { field, source })
    };
    name("rule name", &r.name)?;
    for v in &r.vms {
        name("vms", v)?;
    }
    for h in &r.hosts {
        name("hosts", h)?;
    }
    let kind = r.kind.as_str();
    if r.kind.names_hosts() {
        if r.vms.is_empty() || r.hosts.is_empty() {
            return Err(Error::RuleNeedsVmsAndHosts { kind });
        }
    } else {
        if !r.hosts.is_empty() {
            return Err(Error::RuleNamesHosts { kind });
        }
        let mut distinct = r.vms.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < 2 {
            return Err(Error::RuleNeedsTwoVms { kind });
        }
    }
    Ok(())
}

/// Creates a rule after checking it against the cluster and the other rules: contradictions
/// are [`Error::Rules`] (rule-conflict), a host that is not registered
/// [`Error::RuleUnknownHost`] (invalid-rule), a taken name [`Error::NameTaken`].
pub async fn create(console: &Console, rule: PlacementRule) -> Result<PlacementRule, Error> {
    check_shape(&rule)?;
    let _rules = console.inflight().balancer.rules_lock().await;
    let key = keys::rule_key(&rule.name);
    let taken = || Error::NameTaken {
        kind: Object::Rule,
        name: rule.name.clone(),
    };
    if keys::get::<PlacementRule>(console.store().as_ref(), &key)?.is_some() {
        return Err(taken());
    }
    for h in &rule.hosts {
        if !console.host_registered(h) {
            return Err(Error::RuleUnknownHost {
                rule: rule.name.clone(),
                host: h.clone(),
            });
        }
    }
    let mut all = console.rules()?;
    all.push(rule.clone());
    fit::check_rules(console, &all)?;
    let resp = console.store().txn(Txn {
        compare: vec![Compare::absent(key.clone())],
        success: vec![Op::Put {
            key,
            value: keys::encode(&rule)?,
            lease: 0,
        }],
        failure: vec![],
    })?;
    if !resp.succeeded {
        return Err(taken());
    }
    console.inflight().placement_changed_all();
    console.event("rule", &rule.name, format!("created: {}", describe(&rule)));
    console.inflight().balancer.wake();
    Ok(rule)
}

/// Deletes a rule.
pub async fn delete(console: &Console, name: &str) -> Result<(), Error> {
    let _rules = console.inflight().balancer.rules_lock().await;
    let rule = console.rule(name)?;
    console.store().delete(&keys::rule_key(name))?;
    console.inflight().placement_changed_all();
    console.event("rule", name, format!("deleted: {}", describe(&rule)));
    console.inflight().balancer.wake();
    Ok(())
}
