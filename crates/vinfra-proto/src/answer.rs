//! What a command's answer says about the host's VMs, and which reports tell the console
//! nothing new.
//!
//! Both ends hold the host's latest report. The console takes a command's answer into its copy
//! at once (`agents::registry::request` in vinfra-console), so the observed state is never
//! older than a command it saw answered; the agent takes the same answer into its copy of the
//! last report it sent, and sends a report only when what it observes differs from that copy
//! in more than the values that move all the time ([`HostReport::same_state`]): the answer
//! already told the console.

use std::collections::HashMap;

use uuid::Uuid;
use vinfra_types::{GuardView, VmObserved};

use crate::messages::{AgentCommand, CommandReply, HostReport};

/// An agent whose host's state did not change (apart from the moving values,
/// [`HostReport::same_state`]) sends a periodic report only every this many report intervals
/// (`vinfra agent`'s default: every 8 s with its 2-s interval, so each 10-s bucket of the
/// console's usage history, `vinfra_types::usage::USAGE_INTERVAL_S`, gets at least one).
pub const UNCHANGED_REPORT_EVERY: u32 = 4;

/// What a command's successful answer changes in the host's VMs
/// ([`AgentCommand::answer_effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEffect {
    /// Nothing.
    None,
    /// VM `0` is as the answer's VM says (a [`CommandReply::Vm`] or
    /// [`CommandReply::Stopped`] about that VM; an answer about another VM is not taken: a
    /// host could claim another host's VM that way).
    Vm(Uuid),
    /// VM `0` is gone from the host (a [`CommandReply::Done`]).
    Removes(Uuid),
    /// VM `id`'s HA flag is `ha` (a [`CommandReply::Done`]).
    Ha {
        /// The VM.
        id: Uuid,
        /// Its flag.
        ha: bool,
    },
}

impl AgentCommand {
    /// What this command's successful answer changes in the host's VMs.
    pub fn answer_effect(&self) -> AnswerEffect {
        match self {
            AgentCommand::CreateVm { vm, .. } => AnswerEffect::Vm(vm.id),
            AgentCommand::StartVm { id, .. }
            | AgentCommand::StopVm { id, .. }
            | AgentCommand::RebootVm { id }
            | AgentCommand::ObserveVm { id, .. } => AnswerEffect::Vm(*id),
            AgentCommand::DeleteVm { id, .. }
            | AgentCommand::FinishMigrationSource { id }
            | AgentCommand::AbortIncoming { id } => AnswerEffect::Removes(*id),
            AgentCommand::SetVmHa { id, ha } => AnswerEffect::Ha { id: *id, ha: *ha },
            _ => AnswerEffect::None,
        }
    }
}

impl AnswerEffect {
    /// True when `reply` (a successful answer) changes the host's VMs.
    pub fn applies(self, reply: &CommandReply) -> bool {
        match (self, reply) {
            (AnswerEffect::Vm(id), CommandReply::Vm { vm } | CommandReply::Stopped { vm, .. }) => {
                vm.id == id
            }
            (AnswerEffect::Removes(_) | AnswerEffect::Ha { .. }, CommandReply::Done) => true,
            _ => false,
        }
    }

    /// Takes `reply` (a successful answer) into `vms`, a report's VMs (a new VM goes where
    /// its name sorts, as in the agent's reports).
    pub fn apply(self, reply: &CommandReply, vms: &mut Vec<VmObserved>) {
        if !self.applies(reply) {
            return;
        }
        match (self, reply) {
            (_, CommandReply::Vm { vm } | CommandReply::Stopped { vm, .. }) => {
                match vms.iter_mut().find(|v| v.id == vm.id) {
                    Some(v) => *v = vm.clone(),
                    None => {
                        let at = vms.partition_point(|v| v.name < vm.name);
                        vms.insert(at, vm.clone());
                    }
                }
            }
            (AnswerEffect::Removes(gone), _) => vms.retain(|v| v.id != gone),
            (AnswerEffect::Ha { id, ha }, _) => {
                if let Some(v) = vms.iter_mut().find(|v| v.id == id) {
                    v.ha = ha;
                }
            }
            _ => {}
        }
    }
}

/// A VM's state apart from what moves while it runs (uptime, use, traffic).
fn same_vm(a: &VmObserved, b: &VmObserved) -> bool {
    a.id == b.id
        && a.name == b.name
        && a.state == b.state
        && a.pid == b.pid
        && a.unresponsive == b.unresponsive
        && a.ha == b.ha
}

/// The guard's state apart from its lease's renewals (counter and age).
fn same_guard(a: &Option<GuardView>, b: &Option<GuardView>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.incarnation == b.incarnation
                && a.self_fences == b.self_fences
                && a.isolated == b.isolated
                && a.renewal_age_ms.is_some() == b.renewal_age_ms.is_some()
        }
        _ => false,
    }
}

impl HostReport {
    /// True when `self` tells nothing `other` did not, apart from the values that move all the
    /// time: the host's and each VM's use, the VMs' uptimes and traffic, the guard's lease
    /// renewals. Everything the console acts on (which VMs run where, in which state, with
    /// which process and HA flag, the host's capacity, address, QEMU, network attachment and
    /// guard state) is compared.
    pub fn same_state(&self, other: &HostReport) -> bool {
        if self.host != other.host
            || self.address != other.address
            || self.accel != other.accel
            || self.qemu_version != other.qemu_version
            || self.capacity != other.capacity
            || self.trunk != other.trunk
            || self.underlay_mtu != other.underlay_mtu
            || !same_guard(&self.guard, &other.guard)
            || self.vms.len() != other.vms.len()
        {
            return false;
        }
        if self.vms.iter().zip(&other.vms).all(|(a, b)| same_vm(a, b)) {
            return true;
        }
        // The same VMs in another order.
        let theirs: HashMap<Uuid, &VmObserved> = other.vms.iter().map(|v| (v.id, v)).collect();
        let mine: std::collections::HashSet<Uuid> = self.vms.iter().map(|v| v.id).collect();
        theirs.len() == other.vms.len()
            && mine.len() == self.vms.len()
            && self
                .vms
                .iter()
                .all(|a| theirs.get(&a.id).is_some_and(|b| same_vm(a, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_types::vm::VmNetBytes;
    use vinfra_types::{Accel, HostCapacity, HostUsage, PowerState, VmUsage};

    fn vm(name: &str) -> VmObserved {
        VmObserved {
            id: Uuid::new_v4(),
            name: name.into(),
            state: PowerState::Running,
            pid: Some(100),
            uptime_s: 5,
            usage: VmUsage::default(),
            unresponsive: false,
            ha: false,
            net: None,
        }
    }

    fn report(vms: Vec<VmObserved>) -> HostReport {
        HostReport {
            host: "h1".into(),
            address: "10.0.0.1".into(),
            accel: Accel::Tcg,
            qemu_version: "7.2.0".into(),
            capacity: HostCapacity {
                cores: 4,
                memory_mib: 8192,
            },
            usage: HostUsage::default(),
            vms,
            trunk: None,
            underlay_mtu: 1500,
            guard: None,
        }
    }

    #[test]
    fn the_moving_values_alone_are_no_change_anything_else_is() {
        let (a, b) = (vm("a"), vm("b"));
        let base = report(vec![a.clone(), b.clone()]);
        let mut moved = base.clone();
        moved.usage.cpu_cores = 1.5;
        moved.usage.memory_used_mib = 4000;
        moved.vms[0].uptime_s = 500;
        moved.vms[0].usage.cpu_cores = 0.7;
        moved.vms[1].net = Some(VmNetBytes {
            rx_bytes: 1,
            tx_bytes: 2,
        });
        assert!(moved.same_state(&base) && base.same_state(&moved));
        // The same VMs in another order.
        let swapped = report(vec![b.clone(), a.clone()]);
        assert!(swapped.same_state(&base));

        type Change = Box<dyn Fn(&mut HostReport)>;
        let changes: Vec<(&str, Change)> = vec![
            ("state", Box::new(|r| r.vms[0].state = PowerState::Stopped)),
            ("pid", Box::new(|r| r.vms[1].pid = Some(101))),
            ("ha", Box::new(|r| r.vms[1].ha = true)),
            ("unresponsive", Box::new(|r| r.vms[0].unresponsive = true)),
            ("name", Box::new(|r| r.vms[0].name = "c".into())),
            ("a VM gone", Box::new(|r| drop(r.vms.pop()))),
            ("a VM more", Box::new(|r| r.vms.push(vm("z")))),
            ("capacity", Box::new(|r| r.capacity.cores = 8)),
            ("accel", Box::new(|r| r.accel = Accel::Kvm)),
            ("address", Box::new(|r| r.address = "10.0.0.2".into())),
            ("qemu", Box::new(|r| r.qemu_version = "9.2.0".into())),
            ("trunk", Box::new(|r| r.trunk = Some("eth1".into()))),
            ("mtu", Box::new(|r| r.underlay_mtu = 9000)),
        ];
        for (what, change) in changes {
            let mut r = base.clone();
            change(&mut r);
            assert!(!r.same_state(&base), "{what}");
            assert!(!base.same_state(&r), "{what}");
        }
        // Another VM with the same count, and a duplicate in place of one.
        let other = report(vec![a.clone(), vm("b")]);
        assert!(!other.same_state(&base));
        let twice = report(vec![a.clone(), a.clone()]);
        assert!(!twice.same_state(&base) && !base.same_state(&twice));
    }

    #[test]
    fn the_guards_renewals_are_no_change_its_state_is() {
        let guard = GuardView {
            incarnation: 1,
            lease_counter: 10,
            renewal_age_ms: Some(200),
            self_fences: 0,
            isolated: false,
        };
        let mut base = report(vec![]);
        base.guard = Some(guard);
        let mut r = base.clone();
        r.guard = Some(GuardView {
            lease_counter: 12,
            renewal_age_ms: Some(900),
            ..guard
        });
        assert!(r.same_state(&base));
        let changes = [
            Some(GuardView {
                isolated: true,
                ..guard
            }),
            Some(GuardView {
                incarnation: 2,
                ..guard
            }),
            Some(GuardView {
                self_fences: 1,
                ..guard
            }),
            Some(GuardView {
                renewal_age_ms: None,
                ..guard
            }),
            None,
        ];
        for g in changes {
            r.guard = g;
            assert!(!r.same_state(&base), "{g:?}");
        }
    }

    #[test]
    fn an_answer_changes_the_vms_as_its_command_says() {
        let (a, b) = (vm("a"), vm("c"));
        let mut vms = vec![a.clone(), b.clone()];
        // A create: the new VM goes where its name sorts.
        let mut new = vm("b");
        new.state = PowerState::Stopped;
        let create = AnswerEffect::Vm(new.id);
        let reply = CommandReply::Vm { vm: new.clone() };
        assert!(create.applies(&reply));
        create.apply(&reply, &mut vms);
        let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // A stop's answer replaces the VM.
        let mut stopped = a.clone();
        stopped.state = PowerState::Stopped;
        stopped.pid = None;
        let reply = CommandReply::Stopped {
            vm: stopped.clone(),
            how: crate::messages::StopKind::Forced,
        };
        AnswerEffect::Vm(a.id).apply(&reply, &mut vms);
        assert_eq!(vms[0], stopped);
        // An answer about another VM than the command's is not taken.
        let stray = CommandReply::Vm { vm: vm("stray") };
        assert!(!AnswerEffect::Vm(a.id).applies(&stray));
        AnswerEffect::Vm(a.id).apply(&stray, &mut vms);
        assert_eq!(vms.len(), 3);
        // HA flag, removal; `Done` means nothing to a command about a VM's state.
        AnswerEffect::Ha { id: b.id, ha: true }.apply(&CommandReply::Done, &mut vms);
        assert!(vms[2].ha);
        assert!(!AnswerEffect::Vm(b.id).applies(&CommandReply::Done));
        AnswerEffect::Removes(new.id).apply(&CommandReply::Done, &mut vms);
        let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(!AnswerEffect::None.applies(&CommandReply::Done));
    }

    #[test]
    fn each_command_names_what_its_answer_changes() {
        let id = Uuid::new_v4();
        assert_eq!(
            AgentCommand::DeleteVm {
                id,
                delete_disks: false
            }
            .answer_effect(),
            AnswerEffect::Removes(id)
        );
        assert_eq!(
            AgentCommand::SetVmHa { id, ha: true }.answer_effect(),
            AnswerEffect::Ha { id, ha: true }
        );
        assert_eq!(
            AgentCommand::RebootVm { id }.answer_effect(),
            AnswerEffect::Vm(id)
        );
        assert_eq!(
            AgentCommand::SwitchCounters.answer_effect(),
            AnswerEffect::None
        );
    }
}
