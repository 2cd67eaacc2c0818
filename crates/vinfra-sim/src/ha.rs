//! Host failures in a simulation: what each failure did (`failover.json`), the admission
//! reserve's verdicts and the power-ons it refused (`metrics.json`), and the admission state
//! the engine keeps up to date.
//!
//! The decisions are the HA library's: a failed host's HA VMs are planned by
//! `vinfra_ha::restart::plan` on a placer of the surviving cluster with those VMs taken out
//! (what the console's HA controller does), and power-ons are checked by `vinfra_ha::Admission`
//! (what the console's create and start paths do).

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;
use vinfra_ha::{
    Admission, AdmissionError, HaVm, PowerOn, Priority, ReserveReport, RestartPlan, RestartVm,
};
use vinfra_placement::{ClusterModel, FitTable, NoHost, VmNeeds, VmRequest};

use crate::error::SimError;
use crate::scenario::{Scenario, ScenarioVm};

/// Failing scenarios listed in a verdict; the rest are counted.
const LISTED: usize = 10;

/// One VM restarted by an HA plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartRecord {
    /// The VM.
    pub vm: String,
    /// The host it runs on again.
    pub host: String,
    /// Its restart priority.
    pub priority: Priority,
    /// Its start-after wave (0 first).
    pub wave: usize,
}

/// Hosts that cannot take a VM for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// The reason, as the placement library words it.
    pub reason: String,
    /// How many hosts.
    pub hosts: usize,
    /// The first hosts named (up to four).
    pub examples: Vec<String>,
}

/// One HA VM no host would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnplacedRecord {
    /// The VM.
    pub vm: String,
    /// Its restart priority.
    pub priority: Priority,
    /// Its vCPUs.
    pub vcpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// The library's explanation, one line.
    pub why: String,
    /// Why each host cannot take it, grouped by reason.
    pub hosts_by_reason: Vec<ReasonCount>,
}

impl UnplacedRecord {
    fn new(why: &NoHost, priority: Priority) -> UnplacedRecord {
        UnplacedRecord {
            vm: why.vm.clone(),
            priority,
            vcpus: why.vcpus,
            memory_mib: why.memory_mib,
            why: why.to_string(),
            hosts_by_reason: why
                .groups
                .iter()
                .map(|g| ReasonCount {
                    reason: g.reason.to_string(),
                    hosts: g.hosts.len(),
                    examples: g.hosts.iter().take(4).cloned().collect(),
                })
                .collect(),
        }
    }
}

/// What admission control predicted for one host's failure just before it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// True when every HA VM of the host would restart.
    pub holds: bool,
    /// The HA VMs it would leave unplaced.
    pub unplaced: Vec<String>,
}

/// One host failure and what HA did about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverRecord {
    /// The step it failed at.
    pub step: u32,
    /// The host.
    pub host: String,
    /// The reserve's plan for this host's failure just before it (`null` when admission
    /// control did not run: no HA VM, or `tolerate_host_failures = 0`).
    pub predicted: Option<Prediction>,
    /// Its HA VMs placed elsewhere, wave after wave.
    pub restarts: Vec<RestartRecord>,
    /// Its HA VMs no host would take, in the plan's order, with the library's reason. They are
    /// planned again at every later step.
    pub unplaced: Vec<UnplacedRecord>,
    /// Its VMs without HA: they stop (and stay stopped).
    pub stopped: Vec<String>,
    /// Start-after cycles the plan broke.
    pub cycles: Vec<Vec<String>>,
    /// Time taken by `vinfra_ha::restart::plan`, milliseconds (the one field that differs
    /// from run to run).
    pub planning_ms: f64,
}

/// HA VMs left unplaced by an earlier failure that a later step restarted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryRecord {
    /// The step.
    pub step: u32,
    /// The VMs placed.
    pub restarts: Vec<RestartRecord>,
    /// HA VMs still waiting.
    pub still_unplaced: usize,
    /// Time taken by the plan, milliseconds.
    pub planning_ms: f64,
}

/// A failure scenario of the reserve that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingScenario {
    /// The hosts that fail.
    pub failed: Vec<String>,
    /// HA VMs that would not restart.
    pub unplaced: usize,
    /// Their vCPUs.
    pub shortfall_vcpus: u64,
    /// Their memory, MiB.
    pub shortfall_memory_mib: u64,
}

/// The admission reserve's verdict at one point of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The step.
    pub step: u32,
    /// `start` (after the first step's arrivals), `before-failure` or `end`.
    pub when: &'static str,
    /// Host failures tolerated.
    pub tolerate: u32,
    /// True when every failure scenario's HA VMs would restart.
    pub holds: bool,
    /// Failure scenarios with HA VMs to restart.
    pub scenarios: usize,
    /// Those that do not hold.
    pub failing: usize,
    /// The first of them (up to ten), with their shortfall.
    pub failing_scenarios: Vec<FailingScenario>,
}

impl Verdict {
    fn new(step: u32, when: &'static str, r: &ReserveReport) -> Verdict {
        Verdict {
            step,
            when,
            tolerate: r.tolerate,
            holds: r.holds(),
            scenarios: r.scenarios.len(),
            failing: r.failing().count(),
            failing_scenarios: r
                .failing()
                .take(LISTED)
                .map(|s| FailingScenario {
                    failed: s.failed.clone(),
                    unplaced: s.unplaced.len(),
                    shortfall_vcpus: s.shortfall.vcpus,
                    shortfall_memory_mib: s.shortfall.memory_mib,
                })
                .collect(),
        }
    }
}

/// A VM arrival refused: its host had failed, or admission control refused the power-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedRecord {
    /// The step.
    pub step: u32,
    /// The VM.
    pub vm: String,
    /// The host it would have run on.
    pub host: String,
    /// Why (admission control's message names the reserve and the shortfall).
    pub reason: String,
}

/// Everything HA did in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HaLog {
    /// Every host failure, in order.
    pub failovers: Vec<FailoverRecord>,
    /// Later restarts of VMs a failure left unplaced.
    pub retries: Vec<RetryRecord>,
    /// The reserve's verdicts.
    pub verdicts: Vec<Verdict>,
    /// Arrivals refused.
    pub refused: Vec<RefusedRecord>,
}

impl HaLog {
    /// The restart records of `plan`, wave by wave.
    pub(crate) fn restarts(plan: &RestartPlan) -> Vec<RestartRecord> {
        plan.waves
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| {
                wave.iter().map(move |r| RestartRecord {
                    vm: r.vm.clone(),
                    host: r.host.clone(),
                    priority: r.priority,
                    wave: w,
                })
            })
            .collect()
    }

    /// The unplaced records of `plan`.
    pub(crate) fn unplaced(plan: &RestartPlan) -> Vec<UnplacedRecord> {
        plan.unplaced
            .iter()
            .map(|u| UnplacedRecord::new(&u.why, u.priority))
            .collect()
    }

    /// Records a verdict.
    pub(crate) fn verdict(&mut self, step: u32, when: &'static str, report: &ReserveReport) {
        self.verdicts.push(Verdict::new(step, when, report));
    }
}

/// The id a scenario VM has for the HA library: its position in the file, from 1.
pub fn vm_id(index: usize) -> Uuid {
    Uuid::from_u128(index as u128 + 1)
}

/// The request of scenario VM `v`.
pub(crate) fn request(v: &ScenarioVm) -> VmRequest {
    VmRequest {
        vm: v.name.clone(),
        vcpus: v.vcpus,
        memory_mib: v.memory_mib,
    }
}

/// Scenario VM `index` as the restart plan takes it (it must be HA).
pub(crate) fn restart_vm(s: &Scenario, index: usize) -> RestartVm {
    let v = &s.vms[index];
    RestartVm {
        id: vm_id(index),
        request: request(v),
        needs: VmNeeds::default(),
        policy: v.ha.clone().unwrap_or_default(),
    }
}

/// Scenario VM `index` powering on.
pub(crate) fn power_on(s: &Scenario, index: usize) -> PowerOn {
    let v = &s.vms[index];
    PowerOn {
        request: request(v),
        needs: VmNeeds::default(),
        ha: v.ha.as_ref().map(|p| HaVm {
            id: vm_id(index),
            policy: p.clone(),
        }),
    }
}

/// Admission control as the console keeps it: built from the cluster when first needed, kept
/// up to date VM by VM (power-ons, stops, migrations as a stop and a start), built again after
/// any change of the hosts (maintenance, failure, return).
pub(crate) struct ReserveTracker {
    tolerate: u32,
    admission: Option<Admission>,
    stale: bool,
}

impl ReserveTracker {
    pub(crate) fn new(tolerate: u32) -> ReserveTracker {
        ReserveTracker {
            tolerate,
            admission: None,
            stale: false,
        }
    }

    /// Host failures tolerated (0: nothing is checked).
    pub(crate) fn tolerate(&self) -> u32 {
        self.tolerate
    }

    /// The hosts changed: build again at the next use.
    pub(crate) fn invalidate(&mut self) {
        self.stale = true;
    }

    fn current(&mut self) -> Option<&mut Admission> {
        if self.stale {
            return None;
        }
        self.admission.as_mut()
    }

    /// Scenario VM `index` runs on `host` now, whatever the reserve says (restarted by HA,
    /// migrated, started unchecked).
    pub(crate) fn added(&mut self, s: &Scenario, index: usize, host: &str) {
        let ok = match self.current() {
            Some(a) => a.add(&power_on(s, index), host).is_ok(),
            None => true,
        };
        if !ok {
            self.stale = true;
        }
    }

    /// Scenario VM `name` stopped.
    pub(crate) fn removed(&mut self, name: &str) {
        let ok = match self.current() {
            Some(a) => !a.runs(name) || a.remove(name).is_ok(),
            None => true,
        };
        if !ok {
            self.stale = true;
        }
    }

    /// Scenario VM `index` migrated to `host`.
    pub(crate) fn moved(&mut self, s: &Scenario, index: usize, host: &str) {
        if self.current().is_some() {
            self.removed(&s.vms[index].name);
            self.added(s, index, host);
        }
    }

    /// The admission state for the cluster `model` (the HA VMs are the running VMs with HA on),
    /// built if needed; `None` when nothing is checked (`tolerate_host_failures = 0`).
    pub(crate) fn get(
        &mut self,
        s: &Scenario,
        index: &BTreeMap<&str, usize>,
        model: impl FnOnce() -> ClusterModel,
        step: u32,
    ) -> Result<Option<&mut Admission>, SimError> {
        if self.tolerate == 0 {
            return Ok(None);
        }
        if self.stale || self.admission.is_none() {
            let model = model();
            let ha: BTreeMap<String, HaVm> = model
                .vms
                .iter()
                .filter_map(|v| {
                    let i = *index.get(v.name.as_str())?;
                    let policy = s.vms[i].ha.clone()?;
                    Some((
                        v.name.clone(),
                        HaVm {
                            id: vm_id(i),
                            policy,
                        },
                    ))
                })
                .collect();
            let a = Admission::new(&model, &FitTable::default(), &ha, self.tolerate)
                .map_err(|source| admission_error(step, source))?;
            self.admission = Some(a);
            self.stale = false;
        }
        Ok(self.admission.as_mut())
    }
}

/// A failure of admission control (not a refusal) as the run's error.
pub(crate) fn admission_error(step: u32, source: AdmissionError) -> SimError {
    SimError::Admission {
        step,
        source: Box::new(source),
    }
}
