//! The virtual hardware of VMs against what hosts run (docs/design.md, "CPU baseline and
//! machine types").
//!
//! Each host's agent says at its Hello which QEMU CPU models run there with all their features,
//! which versioned q35 machine types its QEMU offers, and its CPU's name
//! ([`vinfra_types::HostPlatform`], kept in its record). A VM gets its
//! [`vinfra_types::VmPlatform`] once, at create, on the host placement chose:
//! - CPU model: the cluster's CPU baseline (`cpu_baseline`, like vSphere's EVC) when set, else
//!   `host` under KVM (the host's own CPU) or `qemu64` under TCG;
//! - machine type: the newest q35 version that every host that said its platform offers, at
//!   most the chosen host's `q35` (its own when no version is common to all).
//!
//! From then on placement's fit ([`vinfra_placement::VmNeeds`]) takes only hosts that run both
//! (a host that did not say what its QEMU runs takes only VMs without a platform): a start, an
//! HA restart, a migration or a balancer move never goes to a host that lacks them, and one
//! named such a host is refused with the reason. `host` needs KVM. A live move
//! ([`set_live_needs`]) also keeps the accelerator the VM runs under, under TCG the padding of
//! guest memory its source's QEMU has (or has not), and, for `host`, the name of its host's CPU;
//! a cold start or an HA restart boots the guest again and needs none of them. A
//! baseline is accepted only when every host that said its platform runs it.

use vinfra_placement::{HostCaps, VmNeeds};
use vinfra_types::host::{pads_guest_ram, q35_version};
use vinfra_types::vm::{HOST_CPU_MODEL, TCG_CPU_MODEL};
use vinfra_types::{Accel, HostPlatform, VmPlatform};

use crate::error::Error;
use crate::state::records::HostRecord;
use crate::state::Console;

/// Sets what host `rec` (running guests under `accel`) offers in `caps`: nothing when its agent
/// never said.
pub fn set_caps(caps: &mut HostCaps, rec: &HostRecord, accel: Option<Accel>) {
    caps.kvm = accel.map(|a| a == Accel::Kvm);
    caps.padded_ram = pads_guest_ram(accel, rec.qemu_version.as_deref());
    let Some(p) = &rec.platform else {
        return;
    };
    caps.cpu_models = p.cpu_models.clone();
    caps.machine_types = p.machine_types.clone();
    caps.host_cpu = cpu_name(p);
}

/// A host's CPU name, when it said one.
fn cpu_name(p: &HostPlatform) -> Option<String> {
    (!p.cpu_name.is_empty()).then(|| p.cpu_name.clone())
}

/// Sets in `needs` what a VM of `platform` needs wherever it starts (nothing when it has
/// none): its CPU model (for `host`: KVM) and machine type; for a VM being created
/// (`platform` `None`), the cluster's CPU baseline `baseline`.
pub fn set_needs(needs: &mut VmNeeds, platform: Option<&VmPlatform>, baseline: Option<&str>) {
    match platform {
        Some(p) => {
            if p.cpu_model == HOST_CPU_MODEL {
                needs.kvm = Some(true);
            } else {
                needs.cpu_model = Some(p.cpu_model.clone());
            }
            needs.machine_type = Some(p.machine_type.clone());
        }
        None => needs.cpu_model = baseline.map(str::to_string),
    }
}

/// Adds to `needs` what a live move of a VM of `platform` that runs on host `source` needs
/// besides: under TCG a QEMU that pads guest memory as the source's does (or does not: QEMU
/// refuses a stream between RAM blocks of different sizes; docs/design.md, "A QEMU bug and how
/// the agent avoids it"); the accelerator it runs under and, for `host`, a CPU of the same name
/// (as far as the source said them). A VM without a platform needs nothing more than the first.
pub fn set_live_needs(needs: &mut VmNeeds, platform: Option<&VmPlatform>, source: &HostRecord) {
    needs.padded_ram = pads_guest_ram(source.accel, source.qemu_version.as_deref());
    let Some(p) = platform else {
        return;
    };
    if let Some(accel) = source.accel {
        needs.kvm = Some(accel == Accel::Kvm);
    }
    if p.cpu_model == HOST_CPU_MODEL {
        needs.host_cpu = source.platform.as_ref().and_then(cpu_name);
    }
}

/// The platform of a VM created now on `host` under the CPU baseline `baseline` (see the module
/// doc); `None` when the host never said what it runs.
pub fn for_new_vm(console: &Console, host: &str, baseline: Option<&str>) -> Option<VmPlatform> {
    console.with_hosts(|hosts| {
        let rec = &hosts.get(host)?.value;
        let p = rec.platform.as_ref()?;
        let cpu_model = match (baseline, rec.accel) {
            (Some(b), _) => b.to_string(),
            (None, Some(Accel::Kvm)) => HOST_CPU_MODEL.to_string(),
            (None, _) => TCG_CPU_MODEL.to_string(),
        };
        let others: Vec<&HostPlatform> = hosts
            .values()
            .filter(|h| h.value.name != host)
            .filter_map(|h| h.value.platform.as_ref())
            .collect();
        Some(VmPlatform {
            cpu_model,
            machine_type: common_machine_type(p, &others),
        })
    })
}

/// The newest versioned q35 machine type of `p`, at most its default, that every one of
/// `others` offers too; `p`'s default when none is.
fn common_machine_type(p: &HostPlatform, others: &[&HostPlatform]) -> String {
    let Some(top) = q35_version(&p.default_machine_type) else {
        return p.default_machine_type.clone();
    };
    let mut ours: Vec<(Vec<u32>, &String)> = p
        .machine_types
        .iter()
        .filter_map(|m| Some((q35_version(m)?, m)))
        .filter(|(v, _)| *v <= top)
        .collect();
    ours.sort();
    ours.into_iter()
        .rev()
        .map(|(_, m)| m)
        .find(|m| others.iter().all(|o| o.machine_types.contains(m)))
        .unwrap_or(&p.default_machine_type)
        .clone()
}

/// Checks a new CPU baseline `model` against the hosts: every host that said its platform must
/// run it with all its features.
pub fn check_baseline(console: &Console, model: &str) -> Result<(), Error> {
    let (lacking, reported) = console.with_hosts(|hosts| {
        let mut lacking = Vec::new();
        let mut reported = 0usize;
        for h in hosts.values() {
            if let Some(p) = &h.value.platform {
                reported += 1;
                if !p.cpu_models.iter().any(|m| m == model) {
                    lacking.push(h.value.name.clone());
                }
            }
        }
        (lacking, reported)
    });
    if lacking.is_empty() {
        return Ok(());
    }
    let s = if lacking.len() == 1 { "" } else { "s" };
    let all = if lacking.len() == reported {
        " (no host does)"
    } else {
        ""
    };
    Err(Error::Settings {
        reason: format!(
            "cpu_baseline '{model}' does not run with all its features on host{s} {}{all}: name \
             a CPU model every host lists (`vinfra host show NAME`, \"CPU models\")",
            lacking.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(default: &str, machines: &[&str]) -> HostPlatform {
        HostPlatform {
            cpu_name: "cpu".into(),
            cpu_models: vec!["qemu64".into()],
            machine_types: machines.iter().map(|m| m.to_string()).collect(),
            default_machine_type: default.into(),
        }
    }

    #[test]
    fn the_newest_machine_type_every_host_offers_is_chosen() {
        let new = platform("pc-q35-9.2", &["pc-q35-7.2", "pc-q35-9.1", "pc-q35-9.2"]);
        let old = platform("pc-q35-7.2", &["pc-q35-7.1", "pc-q35-7.2"]);
        assert_eq!(common_machine_type(&new, &[&old]), "pc-q35-7.2");
        assert_eq!(common_machine_type(&new, &[]), "pc-q35-9.2");
        assert_eq!(common_machine_type(&old, &[&new]), "pc-q35-7.2");
        // Versions compare as numbers: 7.10 is newer than 7.9.
        let a = platform("pc-q35-7.10", &["pc-q35-7.9", "pc-q35-7.10"]);
        let b = platform("pc-q35-7.10", &["pc-q35-7.9", "pc-q35-7.10"]);
        assert_eq!(common_machine_type(&a, &[&b]), "pc-q35-7.10");
        // Nothing in common: the host's own.
        let c = platform("pc-q35-5.0", &["pc-q35-5.0"]);
        assert_eq!(common_machine_type(&a, &[&c]), "pc-q35-7.10");
    }

    #[test]
    fn a_vm_needs_its_model_or_kvm_and_its_machine_type() {
        let mut n = VmNeeds::default();
        set_needs(&mut n, None, Some("Nehalem-v1"));
        assert_eq!(n.cpu_model.as_deref(), Some("Nehalem-v1"));
        assert_eq!(n.machine_type, None);
        let mut n = VmNeeds::default();
        let host = VmPlatform {
            cpu_model: HOST_CPU_MODEL.into(),
            machine_type: "pc-q35-7.2".into(),
        };
        set_needs(&mut n, Some(&host), Some("Nehalem-v1"));
        assert_eq!(n.cpu_model, None);
        assert_eq!(n.kvm, Some(true));
        assert_eq!(n.host_cpu, None, "a cold start takes any KVM host");
        assert_eq!(n.machine_type.as_deref(), Some("pc-q35-7.2"));
    }
}
