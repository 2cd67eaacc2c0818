//! Which hosts can take a VM: the console's one adapter to `vinfra-placement`.
//!
//! The console keeps one [`RulePlacer`] (the library's index of hosts, running VMs, rules and
//! host fit) in memory, under the placement lock, and answers every placement question with
//! one call to it: [`place`] with a [`Target`]:
//!
//! - [`Target::Any`]: a new VM, on the host placement picks;
//! - [`Target::Host`]: a new VM on the host the operator named;
//! - [`Target::Start`]: a stopped VM starting on its host (maintenance does not keep it off);
//! - [`Target::Migrate`]: a running VM migrating live, to the host the operator named or to
//!   the host placement picks;
//! - [`Target::Planned`]: a move of a balancing plan (host fit only: the plan keeps the
//!   must-rules as a whole, and moves a must-affinity group one VM at a time).
//!
//! Every answer applies the same host fit (a VLAN trunk for VLAN networks, an underlay MTU for
//! the largest overlay MTU, the host connected and not in maintenance, room within the
//! allocation ratios) and, but for planned moves, the same must-rules: a named host that would
//! break one is refused (rule-conflict), as is a migration that would leave a must-affinity
//! partner alone. When no host can take the VM, the refusal names every host and why
//! ([`vinfra_placement::NoHost`]).
//!
//! **What the placer is built from**: every registered host whose capacity is known (reported
//! now, or kept from its last Hello) with the ratios in force, its connection and maintenance,
//! its VLAN trunk and underlay MTU (from its latest report, else from its record); every VM
//! whose desired state is running, with its size and what its networks need; the stored rules.
//! A VM being migrated counts on its destination, and its share stays held back on its source
//! (the source's reserve) until the migration ends.
//!
//! **Keeping up**: the placer follows the console's mirrors instead of being told what happened.
//! Every write of a VM or host record, every migration that begins or ends, marks the name
//! (`state::inflight`), and agent connections and disconnections come from the registry; each
//! decision first applies what changed since the last one, name by name, with the library's
//! incremental calls (commit, remove, migrated, eligibility, capabilities). A change the
//! library cannot apply in place (a host added, removed, or with another capacity or ratios;
//! a rule created or deleted; the cluster's ratios) rebuilds the placer from the mirrors. So a
//! record written after a decision is counted by the next one, and a write that failed was
//! never counted. The host chosen is read again before it is answered: a host whose heartbeat
//! just ran out is not chosen.
//!
//! Rules that contradict each other for the cluster as it is now (a host they name was
//! removed, say) leave the placer without rules; the VMs they name are then refused with the
//! rules' error, every other VM is placed as before.
//!
//! **Admission control** (`ha.tolerate_host_failures` N, enforced while an HA VM runs and
//! N ≥ 1): [`place_and_admit`] (a create that starts, a start) and [`admit_ha`] (HA turned on
//! for a running VM) also ask `vinfra_ha::Admission`, kept with the placer under the placement
//! lock, whether every failure scenario's HA VMs would still restart with this VM running; a
//! refusal is [`Error::HaReserve`] and nothing is written. The admission state follows the
//! mirrors as the placer does: an admitted power-on is committed when its record is seen; any
//! other VM that starts, stops, moves or changes its HA policy is removed and added again
//! (`Admission::add`, whatever the reserve says: HA restarts are the reserve being used); a
//! host whose connection, maintenance or capabilities change is handed to it
//! (`Admission::set_host`: only the scenarios the change touches are planned again); a
//! rebuilt placer (a host added or removed, another capacity, the rules) or another N drops
//! it, and the next check builds it again from the mirrors. [`reserve`] reports it.
//!
//! [`balancing_model`] gives the balancer the same view (with the measured demand), and
//! [`check_rules`] checks a rule set against the cluster.

pub mod platform;
mod view;

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::MutexGuard;
use vinfra_ha::{
    Admission, AdmissionError, Admitted, HaPolicy, HaVm, PowerOn, ReserveReport, RestartPlan,
    RestartVm,
};
pub use vinfra_placement::Target;
use vinfra_placement::{
    ClusterModel, FitError, FitTable, ModelError, RulePlacer, Unfit, VmNeeds, VmRequest,
};
use vinfra_types::balancing::PlacementRule;
use vinfra_types::{VmPlatform, VmSpec};

use crate::error::Error;
use crate::state::records::DesiredPower;
use crate::state::{Console, PlacementChanges, PlacementMemo};
use view::{host_fit, library_rule, needs_of, nic_networks, vm_needs, ClusterView, HostFit};

/// The host placement gave a VM, with the placement lock held: keep it until the record that
/// claims the capacity is written (the next decision counts it).
pub struct Placed<'a> {
    /// The host.
    pub host: String,
    /// For a new VM: the CPU model and machine type it gets there ([`platform::for_new_vm`],
    /// under the CPU baseline its placement used); `None` for other targets, or a host that
    /// did not say what its QEMU runs.
    pub platform: Option<VmPlatform>,
    _lock: MutexGuard<'a, PlacementMemo>,
}

/// The host that takes VM `vm` (with `spec`) for `target`, or why none does (see the module
/// doc). Takes the placement lock and returns it with the answer.
pub async fn place<'a>(
    console: &'a Console,
    vm: &str,
    spec: &VmSpec,
    platform: Option<&VmPlatform>,
    target: Target<'_>,
) -> Result<Placed<'a>, Error> {
    place_with(console, vm, spec, platform, target, false).await
}

/// [`place`] for a power-on (a create that starts, a start of a stopped VM), then admission
/// control at the host chosen: [`Error::HaReserve`] when, with the VM running there, some
/// failure scenario would leave HA VMs unplaced (see the module doc).
pub async fn place_and_admit<'a>(
    console: &'a Console,
    vm: &str,
    spec: &VmSpec,
    platform: Option<&VmPlatform>,
    target: Target<'_>,
) -> Result<Placed<'a>, Error> {
    place_with(console, vm, spec, platform, target, true).await
}

/// Whether `target` places a VM being created.
fn new_vm(target: Target<'_>) -> bool {
    matches!(target, Target::Any | Target::Host(_))
}

/// [`place`], and with `admit` [`place_and_admit`]: one decision under the placement lock; a
/// new VM gets its platform on the host chosen, under the baseline its placement used.
async fn place_with<'a>(
    console: &'a Console,
    vm: &str,
    spec: &VmSpec,
    platform: Option<&VmPlatform>,
    target: Target<'_>,
    admit: bool,
) -> Result<Placed<'a>, Error> {
    let mut lock = console.inflight().placement_lock().await;
    let mut index = caught_up(lock.0.take(), console)?;
    let baseline = new_vm(target).then(|| console.cpu_baseline()).flatten();
    let mut needs = vm_needs(console, vm, spec, platform, target, baseline.as_deref());
    let decided = index
        .decide(console, vm, spec, &needs, target)
        .and_then(|host| {
            let created = new_vm(target)
                .then(|| platform::for_new_vm(console, &host, baseline.as_deref()))
                .flatten();
            if admit {
                // A new VM is admitted with the platform it gets there: admission plans its
                // restarts with what it will need then.
                if let Some(p) = &created {
                    platform::set_needs(&mut needs, Some(p), None);
                }
                index.admit(console, vm, spec, needs, &host)?;
            }
            Ok((host, created))
        });
    lock.0 = Some(index);
    let (host, platform) = decided?;
    Ok(Placed {
        host,
        platform,
        _lock: lock,
    })
}

/// HA turned on for a running VM, admitted: the placement lock, held until the VM's record
/// with its new policy is written.
pub struct HaAdmitted<'a> {
    _lock: MutexGuard<'a, PlacementMemo>,
}

/// Admission control for HA turned on for VM `vm`, running on `host` with `spec` (its new HA
/// policy on): [`Error::HaReserve`] when the reserve would not hold. Takes the placement lock
/// and returns it: hold it until the record is written.
pub async fn admit_ha<'a>(
    console: &'a Console,
    vm: &str,
    spec: &VmSpec,
    host: &str,
) -> Result<HaAdmitted<'a>, Error> {
    let mut lock = console.inflight().placement_lock().await;
    let mut index = caught_up(lock.0.take(), console)?;
    let checked = index.admit_running(console, vm, spec, host);
    lock.0 = Some(index);
    checked?;
    Ok(HaAdmitted { _lock: lock })
}

/// The admission reserve as it is now (`None` when nothing is checked: no HA VM runs, or N is
/// 0), with the running HA VMs counted.
pub async fn reserve(console: &Console) -> Result<(Option<ReserveReport>, usize), Error> {
    let mut lock = console.inflight().placement_lock().await;
    let mut index = caught_up(lock.0.take(), console)?;
    let ha_vms = index.ha.len();
    let report = index.admission(console, false).map(|a| a.report());
    lock.0 = Some(index);
    Ok((report, ha_vms))
}

/// An HA restart plan, with the placement lock held: keep it until the records of the VMs it
/// places name their new hosts (the next decision counts them).
pub struct PlannedRestarts<'a> {
    /// The plan.
    pub plan: RestartPlan,
    _lock: MutexGuard<'a, PlacementMemo>,
}

/// Where the VMs `vms` (records of hosts that failed, each with its restart policy) run again:
/// the HA restart plan (`vinfra_ha::restart::plan`) on a copy of the placer with those VMs
/// taken out, so the same host fit, must-rules and capacity decide as for every placement.
/// Takes the placement lock and returns it with the plan.
pub async fn plan_restarts<'a>(
    console: &'a Console,
    vms: &[(&crate::state::records::VmRecord, HaPolicy)],
) -> Result<PlannedRestarts<'a>, Error> {
    let mut lock = console.inflight().placement_lock().await;
    let index = caught_up(lock.0.take(), console)?;
    let mut placer = index.placer.clone();
    lock.0 = Some(index);
    let restart: Vec<RestartVm> = vms
        .iter()
        .map(|(rec, policy)| RestartVm {
            id: rec.id,
            request: VmRequest {
                vm: rec.spec.name.clone(),
                vcpus: rec.spec.vcpus,
                memory_mib: rec.spec.memory_mib,
            },
            needs: needs_of(console, &nic_networks(&rec.spec), rec.platform.as_ref()),
            policy: policy.clone(),
        })
        .collect();
    for v in &restart {
        // Counted on the lost host until now; not running there any more.
        let _ = placer.remove(&v.request.vm);
    }
    let plan = vinfra_ha::restart::plan(&mut placer, &restart).map_err(Error::Restart)?;
    Ok(PlannedRestarts { plan, _lock: lock })
}

/// The index `kept` from the last decision, brought up to date with what changed since (built
/// when there is none yet, or when a change needs it).
fn caught_up(kept: Option<Box<dyn Any + Send>>, console: &Console) -> Result<Box<Index>, Error> {
    let changes = console.inflight().take_placement_changes();
    if let Some(mut index) = kept.and_then(|b| b.downcast::<Index>().ok()) {
        if !changes.all && index.catch_up(console, changes).is_ok() {
            return Ok(index);
        }
    }
    Ok(Box::new(Index::build(console)?))
}

/// The placer can no longer be updated in place: it is built again.
#[derive(Debug)]
struct Stale;

/// A running VM as the placer counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VmFit {
    host: String,
    vcpus: u32,
    memory_mib: u64,
}

/// The placer and what it was told, to compare with the mirrors.
struct Index {
    placer: RulePlacer,
    /// The hosts in the placer.
    hosts: HashMap<String, HostFit>,
    /// The VMs counted in the placer.
    vms: HashMap<String, VmFit>,
    /// Why the stored rules were left out, and the VMs they name (refused with that error).
    rules_refused: Option<(ModelError, HashSet<String>)>,
    /// Hosts whose agent connected or disconnected.
    connections: UnboundedReceiver<String>,
    /// The HA policy of the VMs counted in the placer whose HA is on.
    ha: HashMap<String, HaVm>,
    /// Admission control's state, built at the first check that needs it (see the module
    /// doc); `None` when not built or dropped.
    admission: Option<Admission>,
    /// The power-on admitted at the last decision, and its host: committed when its record
    /// is seen.
    admitted: Option<(Admitted, String)>,
}

impl Index {
    /// The placer from the mirrors, the registry and the stored rules.
    fn build(console: &Console) -> Result<Index, Error> {
        // Subscribed first: a connection changing while the mirrors are read is applied at
        // the next decision.
        let connections = console.agents().subscribe();
        let view = ClusterView::read(console, false);
        let mut model = view.model;
        model.rules = console.rules()?.iter().map(library_rule).collect();
        let (placer, rules_refused) = match RulePlacer::new(&model, &view.fit) {
            Ok(p) => (p, None),
            Err(e) if !model.rules.is_empty() => {
                tracing::warn!(
                    "placement rules left out until they fit the cluster again: {}",
                    vinfra_types::error::Chain(&e)
                );
                let named = model
                    .rules
                    .iter()
                    .flat_map(|r| r.vms().iter().cloned())
                    .collect();
                model.rules.clear();
                (RulePlacer::new(&model, &view.fit)?, Some((e, named)))
            }
            Err(e) => return Err(e.into()),
        };
        let vms: HashMap<String, VmFit> = model
            .vms
            .into_iter()
            .map(|v| {
                let fit = VmFit {
                    host: v.host,
                    vcpus: v.vcpus,
                    memory_mib: v.memory_mib,
                };
                (v.name, fit)
            })
            .collect();
        let ha = console.with_vms(|recs| {
            recs.values()
                .map(|v| &v.value)
                .filter(|r| r.spec.ha.enabled && vms.contains_key(&r.spec.name))
                .map(|r| (r.spec.name.clone(), ha_vm(r.id, &r.spec)))
                .collect()
        });
        Ok(Index {
            placer,
            hosts: view.hosts,
            vms,
            rules_refused,
            connections,
            ha,
            admission: None,
            admitted: None,
        })
    }

    /// Applies `changes` and the connections since the last call, name by name.
    fn catch_up(&mut self, console: &Console, changes: PlacementChanges) -> Result<(), Stale> {
        let mut hosts = changes.hosts;
        while let Ok(h) = self.connections.try_recv() {
            hosts.insert(h);
        }
        for h in &hosts {
            self.refresh_host(console, h)?;
        }
        // The power-on admitted last first: its commit holds only before any other change.
        let first = self.admitted.as_ref().map(|(a, _)| a.vm().to_string());
        if let Some(v) = first.as_ref().filter(|v| changes.vms.contains(*v)) {
            self.refresh_vm(console, v)?;
        }
        self.admitted = None;
        for v in changes.vms.iter().filter(|v| Some(*v) != first.as_ref()) {
            self.refresh_vm(console, v)?;
        }
        if self.ha.is_empty() {
            self.admission = None;
        }
        Ok(())
    }

    /// Tells the placer what host `name` is now; true when that changed anything.
    fn refresh_host(&mut self, console: &Console, name: &str) -> Result<bool, Stale> {
        let now = console.with_hosts(|hosts| {
            hosts
                .get(name)
                .and_then(|rec| host_fit(console, &rec.value, &console.inflight().migrations()))
        });
        let Some(cur) = self.hosts.get(name) else {
            // A host the placer does not know: it knows it as soon as its capacity is.
            return if now.is_some() { Err(Stale) } else { Ok(false) };
        };
        let Some(now) = now else {
            return Err(Stale);
        };
        if now == *cur {
            return Ok(false);
        }
        if now.capacity != cur.capacity || now.ratios != cur.ratios {
            return Err(Stale);
        }
        let mut applied = Ok(());
        if now.eligible != cur.eligible {
            applied = self.placer.set_eligibility(name, now.eligible);
        }
        if applied.is_ok() && now.caps != cur.caps {
            applied = self.placer.set_caps(name, now.caps.clone());
        }
        if let Err(e) = applied {
            tracing::warn!(
                host = name,
                "placement index: {}",
                vinfra_types::error::Chain(&e)
            );
            return Err(Stale);
        }
        // Admission plans every scenario with the hosts' eligibility and capabilities: the
        // scenarios the change touches are planned again.
        if let Some(adm) = self.admission.as_mut() {
            if let Err(e) = adm.set_host(name, now.eligible, now.caps.clone()) {
                tracing::warn!(
                    host = name,
                    "admission control dropped, built again at the next check: {}",
                    vinfra_types::error::Chain(&e)
                );
                self.admission = None;
            }
        }
        self.hosts.insert(name.to_string(), now);
        Ok(true)
    }

    /// Tells the placer (and admission control) where VM `name` runs now, if it runs.
    fn refresh_vm(&mut self, console: &Console, name: &str) -> Result<(), Stale> {
        let migrating = console.inflight().migration(name);
        let now = console.with_vms(|vms| {
            let rec = &vms.get(name)?.value;
            if rec.desired != DesiredPower::Running {
                return None;
            }
            let host = migrating
                .as_ref()
                .map_or(&rec.host, |m| &m.destination)
                .clone();
            let fit = VmFit {
                host,
                vcpus: rec.spec.vcpus,
                memory_mib: rec.spec.memory_mib,
            };
            let ha = rec.spec.ha.enabled.then(|| ha_vm(rec.id, &rec.spec));
            Some((fit, (nic_networks(&rec.spec), rec.platform.clone()), ha))
        });
        // A VM on a host the placer does not know counts nowhere (it knows the host, and the
        // VM with it, as soon as the host's capacity is known).
        let now = now.filter(|(fit, _, _)| self.hosts.contains_key(&fit.host));
        let cur = self.vms.get(name);
        let needs = now
            .as_ref()
            .map(|(_, (nets, platform), _)| needs_of(console, nets, platform.as_ref()));
        let done = match (cur, &now, &needs) {
            (None, None, _) => Ok(()),
            (Some(c), Some((n, _, _)), _) if c == n => Ok(()),
            (Some(c), Some((n, _, _)), _) if c.vcpus == n.vcpus && c.memory_mib == n.memory_mib => {
                self.placer.migrated(name, &n.host)
            }
            (Some(_), None, _) => self.placer.remove(name),
            (Some(_), Some((n, _, _)), Some(needs)) => self
                .placer
                .remove(name)
                .and_then(|()| self.placer.commit(&request(name, n), needs, &n.host)),
            (None, Some((n, _, _)), Some(needs)) => {
                self.placer.commit(&request(name, n), needs, &n.host)
            }
            (_, Some(_), None) => Ok(()),
        };
        if let Err(e) = done {
            tracing::warn!(
                vm = name,
                "placement index: {}",
                vinfra_types::error::Chain(&e)
            );
            return Err(Stale);
        }
        let placer_same = match (cur, &now) {
            (None, None) => true,
            (Some(c), Some((n, _, _))) => c == n,
            _ => false,
        };
        let ha_now = now.as_ref().and_then(|(_, _, ha)| ha.clone());
        let ha_same = self.ha.get(name) == ha_now.as_ref();
        if !(placer_same && ha_same) {
            let power_on = now.as_ref().zip(needs).map(|((n, _, ha), needs)| {
                let on = PowerOn {
                    request: request(name, n),
                    needs,
                    ha: ha.clone(),
                };
                (on, n.host.clone())
            });
            self.admission_follows(name, power_on);
        }
        match now {
            Some((n, _, _)) => self.vms.insert(name.to_string(), n),
            None => self.vms.remove(name),
        };
        match ha_now {
            Some(ha) => self.ha.insert(name.to_string(), ha),
            None => self.ha.remove(name),
        };
        Ok(())
    }

    /// Tells admission control that VM `name` now runs as `now` (a power-on and its host), or
    /// no longer runs. The power-on admitted at the last decision is committed as it was
    /// checked; anything else is removed and added again whatever the reserve says. On
    /// failure admission control is dropped (built again at the next check).
    fn admission_follows(&mut self, name: &str, now: Option<(PowerOn, String)>) {
        let Some(adm) = self.admission.as_mut() else {
            return;
        };
        let admitted = self.admitted.take();
        let pending = match (admitted, &now) {
            (Some((a, host)), Some((on, h))) if a.vm() == name && host == *h && !adm.runs(name) => {
                let _ = on;
                Some(a)
            }
            _ => None,
        };
        let applied = match pending {
            Some(a) => match adm.commit(a) {
                Err(AdmissionError::Stale) => Self::readd(adm, name, now.as_ref()),
                other => other,
            },
            None => Self::readd(adm, name, now.as_ref()),
        };
        if let Err(e) = applied {
            tracing::warn!(
                vm = name,
                "admission control dropped, built again at the next check: {}",
                vinfra_types::error::Chain(&e)
            );
            self.admission = None;
        }
    }

    /// Removes VM `name` from `adm` if it runs there, and adds it as `now`.
    fn readd(
        adm: &mut Admission,
        name: &str,
        now: Option<&(PowerOn, String)>,
    ) -> Result<(), AdmissionError> {
        if adm.runs(name) {
            adm.remove(name)?;
        }
        match now {
            Some((on, host)) => adm.add(on, host),
            None => Ok(()),
        }
    }

    /// Admission control as it is now, built when it is not (`None` when nothing is checked:
    /// N is 0, or no HA VM runs and `powering_ha` (the VM powering on is HA) is false).
    fn admission(&mut self, console: &Console, powering_ha: bool) -> Option<&mut Admission> {
        let n = console.settings().ha.tolerate_host_failures;
        if n == 0 || (self.ha.is_empty() && !powering_ha) {
            return None;
        }
        if self.admission.as_ref().is_some_and(|a| a.tolerate() != n) {
            self.admission = None;
        }
        if self.admission.is_none() {
            let view = ClusterView::read(console, false);
            let mut model = view.model;
            if self.rules_refused.is_none() {
                match console.rules() {
                    Ok(rules) => model.rules = rules.iter().map(library_rule).collect(),
                    Err(e) => {
                        tracing::warn!(
                            "admission control without rules: {}",
                            vinfra_types::error::Chain(&e)
                        );
                    }
                }
            }
            let running: HashSet<&str> = model.vms.iter().map(|v| v.name.as_str()).collect();
            let ha: BTreeMap<String, HaVm> = console.with_vms(|recs| {
                recs.values()
                    .map(|v| &v.value)
                    .filter(|r| r.spec.ha.enabled && running.contains(r.spec.name.as_str()))
                    .map(|r| (r.spec.name.clone(), ha_vm(r.id, &r.spec)))
                    .collect()
            });
            match Admission::new(&model, &view.fit, &ha, n) {
                Ok(a) => self.admission = Some(a),
                Err(e) => {
                    tracing::warn!(
                        "admission control cannot be built, power-ons are not checked: {}",
                        vinfra_types::error::Chain(&e)
                    );
                    return None;
                }
            }
        }
        self.admission.as_mut()
    }

    /// Admission control for VM `vm` (`spec`) powering on at `host` (see [`place_and_admit`]).
    fn admit(
        &mut self,
        console: &Console,
        vm: &str,
        spec: &VmSpec,
        needs: VmNeeds,
        host: &str,
    ) -> Result<(), Error> {
        let on = PowerOn {
            request: VmRequest {
                vm: vm.to_string(),
                vcpus: spec.vcpus,
                memory_mib: spec.memory_mib,
            },
            needs,
            // The id is not known yet for a create: the plan orders by priority and name.
            ha: spec.ha.enabled.then(|| ha_vm(uuid::Uuid::nil(), spec)),
        };
        let Some(adm) = self.admission(console, spec.ha.enabled) else {
            return Ok(());
        };
        match adm.check_power_on(&on, host) {
            Ok(a) => {
                self.admitted = Some((a, host.to_string()));
                Ok(())
            }
            Err(AdmissionError::Refused(r)) => Err(Error::HaReserve(r)),
            Err(e) => {
                tracing::warn!(
                    vm,
                    "admission control could not check the power-on, admitted: {}",
                    vinfra_types::error::Chain(&e)
                );
                self.admission = None;
                Ok(())
            }
        }
    }

    /// Admission control for HA turned on for VM `vm`, running on `host` (see [`admit_ha`]):
    /// the VM taken out, checked as an HA power-on, and put back as it ran.
    fn admit_running(
        &mut self,
        console: &Console,
        vm: &str,
        spec: &VmSpec,
        host: &str,
    ) -> Result<(), Error> {
        let ha_was = self.ha.get(vm).cloned();
        let Some(adm) = self.admission(console, true) else {
            return Ok(());
        };
        if !adm.runs(vm) {
            return Ok(());
        }
        let (id, platform) = console
            .with_vms(|v| v.get(vm).map(|r| (r.value.id, r.value.platform.clone())))
            .unwrap_or_default();
        let request = VmRequest {
            vm: vm.to_string(),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
        };
        let needs = needs_of(console, &nic_networks(spec), platform.as_ref());
        let was = PowerOn {
            request: request.clone(),
            needs: needs.clone(),
            ha: ha_was,
        };
        let on = PowerOn {
            request,
            needs,
            ha: Some(ha_vm(id, spec)),
        };
        let checked = adm.remove(vm).and_then(|()| adm.check_power_on(&on, host));
        // Back as it ran: the record's change is counted when it is written.
        let back = adm.add(&was, host);
        if back.is_err() {
            self.admission = None;
        }
        match checked {
            Ok(_) => Ok(()),
            Err(AdmissionError::Refused(r)) => Err(Error::HaReserve(r)),
            Err(e) => {
                tracing::warn!(
                    vm,
                    "admission control could not check HA turned on, admitted: {}",
                    vinfra_types::error::Chain(&e)
                );
                self.admission = None;
                Ok(())
            }
        }
    }

    /// Brings the placer up to date with host `name` (built again when it must be).
    fn refresh_or_rebuild(&mut self, console: &Console, name: &str) -> Result<bool, Error> {
        match self.refresh_host(console, name) {
            Ok(changed) => Ok(changed),
            Err(Stale) => match Index::build(console) {
                Ok(index) => {
                    *self = index;
                    Ok(true)
                }
                Err(e) => {
                    // Built again at the next decision.
                    console.inflight().placement_changed_all();
                    Err(e)
                }
            },
        }
    }

    /// The one decision (see [`place`]).
    fn decide(
        &mut self,
        console: &Console,
        vm: &str,
        spec: &VmSpec,
        needs: &VmNeeds,
        target: Target<'_>,
    ) -> Result<String, Error> {
        let req = VmRequest {
            vm: vm.to_string(),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
        };
        let named = match target {
            Target::Host(h) | Target::Start(h) | Target::Migrate(Some(h)) | Target::Planned(h) => {
                Some(h)
            }
            Target::Any | Target::Migrate(None) => None,
        };
        // A host named is read again first (its heartbeat may have run out a moment ago).
        if let Some(h) = named {
            self.refresh_or_rebuild(console, h)?;
        }
        if let Some((e, ruled)) = &self.rules_refused {
            if ruled.contains(vm) {
                return Err(e.clone().into());
            }
        }
        if let Some(h) = named {
            if !self.hosts.contains_key(h) && console.host_registered(h) {
                // Registered, but its agent never said what it has: it never connected.
                return Err(Error::Fit(FitError::HostUnfit {
                    host: h.to_string(),
                    vm: req.vm,
                    vcpus: req.vcpus,
                    memory_mib: req.memory_mib,
                    unfit: Unfit::Disconnected,
                }));
            }
            return Ok(self.placer.decide(&req, needs, target)?.host);
        }
        // The host chosen is read again: if it changed (its heartbeat ran out a moment ago),
        // the placer knows it now and chooses again.
        let mut placed = self.placer.decide(&req, needs, target)?;
        for _ in 0..3 {
            if !self.refresh_or_rebuild(console, &placed.host)? {
                break;
            }
            placed = self.placer.decide(&req, needs, target)?;
        }
        Ok(placed.host)
    }
}

/// A VM's HA settings as admission control takes them.
fn ha_vm(id: uuid::Uuid, spec: &VmSpec) -> HaVm {
    HaVm {
        id,
        policy: HaPolicy {
            priority: spec.ha.priority,
            start_after: spec.ha.start_after.clone(),
        },
    }
}

/// The request of a VM counted as `fit`.
fn request(vm: &str, fit: &VmFit) -> VmRequest {
    VmRequest {
        vm: vm.to_string(),
        vcpus: fit.vcpus,
        memory_mib: fit.memory_mib,
    }
}

/// The cluster for a balancing pass, under the stored rules, and what fit knows beyond
/// capacity (each host's capabilities and reserve, each VM's needs): the hosts and VMs the
/// placer is built from, with each VM's measured demand.
pub fn balancing_model(console: &Console) -> Result<(ClusterModel, FitTable), Error> {
    let view = ClusterView::read(console, true);
    let mut model = view.model;
    model.rules = console.rules()?.iter().map(library_rule).collect();
    Ok((model, view.fit))
}

/// Checks `rules` against the cluster: contradictions, hosts they name that placement does
/// not know, groups too large for any host.
pub fn check_rules(console: &Console, rules: &[PlacementRule]) -> Result<(), Error> {
    let mut model = ClusterView::read(console, false).model;
    model.rules = rules.iter().map(library_rule).collect();
    model.validate()?;
    Ok(())
}
