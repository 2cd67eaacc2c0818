//! Host fit, in one place: whether a host can take a VM and, if not, why.
//!
//! A host offers capabilities ([`HostCaps`]: a VLAN trunk, its underlay MTU, the CPU models it
//! runs, capacity held in reserve); a VM needs some of them ([`VmNeeds`]: the VLAN networks it
//! has NICs on, the overlay network with the largest MTU it is on, a CPU model). One check
//! answers for a host and a VM, in a fixed order, and the first test that fails is the typed
//! reason ([`Unfit`]):
//!
//! 1. capabilities: a VLAN trunk for VLAN networks, an underlay MTU of at least the overlay
//!    MTU + the VXLAN encapsulation, the CPU model;
//! 2. availability: the agent is connected, the host is not in maintenance (starting a VM that
//!    is already placed on a host in maintenance is allowed);
//! 3. must-rules: placing (or moving) the VM there breaks none (or makes none worse);
//! 4. capacity: the host's allocation plus the VM plus its reserve stays within its allocatable
//!    vCPUs and memory.
//!
//! [`check`] is that check for one host, without rules. [`NoHost`] explains "no host can take
//! VM x": why each host cannot, hosts with the same reason together, in one line.
//!
//! Every decision of the crate goes through it: [`crate::place::place`] and
//! [`crate::place::Cluster`] (no rules), [`crate::placer::RulePlacer`] (all four), and the
//! balancer, which never moves a VM to a host that does not fit it and counts a VM on a host
//! whose capabilities no longer fit it as a hard violation to repair.

use std::collections::BTreeMap;
use std::fmt;

use vinfra_types::network::{underlay_mtu_for_overlay, UNDERLAY_MTU, VXLAN_OVERHEAD};
use vinfra_types::{AllocationRatios, HostCapacity};

use crate::host::{allocatable_memory_mib, allocatable_vcpus, Eligibility, HostInput, VmRequest};
use crate::quoted::Quoted;

/// Capacity held back on a host: placement leaves it free and the balancer counts it as used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reserve {
    /// vCPUs held back.
    pub vcpus: u32,
    /// Memory held back, MiB.
    pub memory_mib: u64,
}

/// What a host offers beyond its capacity. New capabilities are new fields whose default
/// takes nothing away from a VM that does not need them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostCaps {
    /// Its agent has a VLAN trunk (`--trunk-interface`): it carries VLAN networks.
    pub vlan_trunk: bool,
    /// IP MTU of its underlay (`--underlay-mtu`): an overlay packet plus the VXLAN
    /// encapsulation must fit in it.
    pub underlay_mtu: u32,
    /// QEMU CPU models it runs (a CPU baseline for live migration between different hosts).
    /// Empty until agents report them; a VM that needs a model does not fit a host that does
    /// not list it.
    pub cpu_models: Vec<String>,
    /// Its CPU's name, when known: a VM moving live with the host's own CPU
    /// ([`VmNeeds::host_cpu`]) fits only hosts with the same name.
    pub host_cpu: Option<String>,
    /// Whether it runs guests under KVM (`Some(false)`: TCG), when known.
    pub kvm: Option<bool>,
    /// Machine types its QEMU offers (`pc-q35-7.2`, …). Empty until agents report them; a VM
    /// that needs one does not fit a host that does not list it.
    pub machine_types: Vec<String>,
    /// Under TCG, whether its QEMUs get their guest's memory padded (a QEMU before 9.0; a
    /// live move needs both ends alike, [`VmNeeds::padded_ram`]); `None`: KVM, or not known.
    pub padded_ram: Option<bool>,
    /// Capacity held back from VMs: the HA failover reserve, or the share a VM migrating away
    /// keeps on its source until the switchover.
    pub reserve: Reserve,
}

/// A host with no trunk, the default underlay MTU, no CPU model reported and no reserve.
pub static BASIC_HOST: HostCaps = HostCaps {
    vlan_trunk: false,
    underlay_mtu: UNDERLAY_MTU,
    cpu_models: Vec::new(),
    host_cpu: None,
    kvm: None,
    machine_types: Vec::new(),
    padded_ram: None,
    reserve: Reserve {
        vcpus: 0,
        memory_mib: 0,
    },
};

impl Default for HostCaps {
    fn default() -> Self {
        BASIC_HOST.clone()
    }
}

impl HostCaps {
    /// The same capabilities without the reserve (hosts that differ only by their reserve take
    /// the same VMs).
    pub(crate) fn class(&self) -> HostCaps {
        HostCaps {
            reserve: Reserve::default(),
            ..self.clone()
        }
    }
}

/// An overlay network a VM is on, with its MTU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OverlayMtu {
    /// Network name.
    pub network: String,
    /// The network's MTU.
    pub mtu: u32,
}

impl OverlayMtu {
    /// The underlay MTU it needs: its MTU + the VXLAN encapsulation.
    pub fn underlay_mtu(&self) -> u32 {
        underlay_mtu_for_overlay(self.mtu)
    }
}

/// What a VM needs from a host beyond room for its size. The default needs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VmNeeds {
    /// VLAN networks it has NICs on, in NIC order, each once: they need a VLAN trunk.
    pub vlan_networks: Vec<String>,
    /// The overlay network with the largest MTU among its NICs (the first in NIC order on a
    /// tie): it needs an underlay MTU of at least that MTU + the VXLAN encapsulation.
    pub overlay: Option<OverlayMtu>,
    /// QEMU CPU model it runs with, when every host it runs on must offer it.
    pub cpu_model: Option<String>,
    /// The CPU name it needs: a VM with the host's own CPU moving live fits only hosts whose
    /// CPU has the name of the one it runs on.
    pub host_cpu: Option<String>,
    /// The accelerator it needs: KVM for a VM with the host's own CPU; for a live move, the
    /// one it runs under (a migration cannot change it).
    pub kvm: Option<bool>,
    /// Machine type it runs with: every host it runs on must offer it.
    pub machine_type: Option<String>,
    /// For a live move under TCG: whether its QEMU's memory is padded (its source's
    /// [`HostCaps::padded_ram`]); QEMU refuses a stream between RAM blocks of different sizes.
    pub padded_ram: Option<bool>,
}

/// A VM that needs nothing beyond room for its size.
pub static NO_NEEDS: VmNeeds = VmNeeds {
    vlan_networks: Vec::new(),
    overlay: None,
    cpu_model: None,
    host_cpu: None,
    kvm: None,
    machine_type: None,
    padded_ram: None,
};

impl VmNeeds {
    /// True when any host's capabilities fit it.
    pub fn is_empty(&self) -> bool {
        self.vlan_networks.is_empty()
            && self.overlay.is_none()
            && self.cpu_model.is_none()
            && self.host_cpu.is_none()
            && self.kvm.is_none()
            && self.machine_type.is_none()
            && self.padded_ram.is_none()
    }

    /// Whether hosts with capabilities `caps` offer what it needs (capacity aside).
    pub fn met_by(&self, caps: &HostCaps) -> bool {
        caps_gap(caps, self).is_none()
    }
}

/// Memory a VM lacks on a host, with the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryShort {
    /// MiB missing.
    pub short_mib: u64,
    /// MiB allocated to the VMs there.
    pub allocated_mib: u64,
    /// `floor(physical × ratio)`, MiB.
    pub allocatable_mib: u64,
    /// Physical memory, MiB.
    pub physical_mib: u64,
    /// Memory allocation ratio in force.
    pub ratio: f64,
    /// MiB held in reserve.
    pub reserved_mib: u64,
}

/// vCPUs a VM lacks on a host, with the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VcpuShort {
    /// vCPUs missing.
    pub short: u64,
    /// vCPUs allocated to the VMs there.
    pub allocated: u64,
    /// `floor(cores × ratio)`.
    pub allocatable: u32,
    /// Physical cores.
    pub cores: u32,
    /// CPU allocation ratio in force.
    pub ratio: f64,
    /// vCPUs held in reserve.
    pub reserved: u32,
}

/// What a VM lacks on a host: memory, vCPUs or both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shortfall {
    /// Memory missing, if any.
    pub memory: Option<MemoryShort>,
    /// vCPUs missing, if any.
    pub vcpus: Option<VcpuShort>,
}

impl Shortfall {
    /// (memory short, vCPUs short): how far from fitting, for "closest host" comparisons.
    pub fn distance(&self) -> (u64, u64) {
        (
            self.memory.map_or(0, |m| m.short_mib),
            self.vcpus.map_or(0, |c| c.short),
        )
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.memory {
            write!(
                f,
                "memory short by {} MiB (allocated {} of {} MiB allocatable = {} MiB physical × ratio {}",
                m.short_mib, m.allocated_mib, m.allocatable_mib, m.physical_mib, m.ratio
            )?;
            if m.reserved_mib > 0 {
                write!(f, ", {} MiB of it reserved", m.reserved_mib)?;
            }
            f.write_str(")")?;
        }
        if let Some(c) = &self.vcpus {
            if self.memory.is_some() {
                f.write_str("; ")?;
            }
            write!(
                f,
                "vCPU short by {} (allocated {} of {} vCPU allocatable = {} cores × ratio {}",
                c.short, c.allocated, c.allocatable, c.cores, c.ratio
            )?;
            if c.reserved > 0 {
                write!(f, ", {} vCPU of it reserved", c.reserved)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a host cannot take a VM (the first test of the check that fails, see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Unfit {
    /// The VM has NICs on these VLAN networks and the host has no VLAN trunk.
    NoTrunk {
        /// The VM's VLAN networks.
        networks: Quoted,
    },
    /// The host's underlay MTU is smaller than the VM's overlay network needs.
    UnderlayMtu {
        /// The host's underlay MTU.
        have: u32,
        /// The underlay MTU needed: the network's MTU + the VXLAN encapsulation.
        need: u32,
        /// The overlay network.
        network: String,
        /// Its MTU.
        network_mtu: u32,
    },
    /// The VM needs a CPU model the host does not run.
    CpuModel {
        /// The model.
        model: String,
    },
    /// The VM moves live with its host's own CPU and this host's CPU has another name (or
    /// did not say its name).
    HostCpu {
        /// The CPU name the VM needs.
        need: String,
        /// The host's, if it said.
        have: Option<String>,
    },
    /// The host runs guests under another accelerator than the VM needs (or did not say).
    Accel {
        /// Whether the VM needs KVM (else TCG).
        kvm: bool,
        /// The host's, if it said.
        have: Option<bool>,
    },
    /// The VM moves live under TCG and the host's QEMU pads guest memory where the VM's does
    /// not, or the other way round (or the host did not say its QEMU).
    PaddedRam {
        /// Whether the VM's QEMU pads.
        need: bool,
    },
    /// The VM needs a machine type the host's QEMU does not offer.
    MachineType {
        /// The machine type.
        machine: String,
    },
    /// The host's agent is disconnected.
    Disconnected,
    /// The host is in maintenance.
    Maintenance,
    /// The VM runs there already (a migration's source).
    Source,
    /// The VM there would break these must-rules (or break them further).
    MustRule {
        /// The rules.
        rules: Quoted,
    },
    /// The host lacks allocatable capacity for the VM.
    Capacity(Box<Shortfall>),
}

impl Unfit {
    /// Order of the check's tests; groups of an explanation follow it.
    fn rank(&self) -> u8 {
        match self {
            Unfit::NoTrunk { .. } => 0,
            Unfit::UnderlayMtu { .. } => 1,
            Unfit::CpuModel { .. } => 2,
            Unfit::HostCpu { .. } => 3,
            Unfit::Accel { .. } => 4,
            Unfit::PaddedRam { .. } => 5,
            Unfit::MachineType { .. } => 6,
            Unfit::Disconnected => 7,
            Unfit::Maintenance => 8,
            Unfit::Source => 9,
            Unfit::MustRule { .. } => 10,
            Unfit::Capacity(_) => 11,
        }
    }
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NoTrunk { networks } => {
                let s = if networks.len() == 1 { "" } else { "s" };
                write!(
                    f,
                    "it has no VLAN trunk for VLAN network{s} {networks} (its agent runs without \
                     --trunk-interface)"
                )
            }
            Unfit::UnderlayMtu {
                have,
                need,
                network,
                network_mtu,
            } => write!(
                f,
                "its underlay MTU is {have}, and overlay network '{network}' (MTU {network_mtu}) \
                 needs at least {need} ({network_mtu} + {VXLAN_OVERHEAD} bytes of VXLAN \
                 encapsulation; its agent's --underlay-mtu)"
            ),
            Unfit::CpuModel { model } => write!(
                f,
                "it does not run the VM's CPU model '{model}' with all its features (or did not \
                 say what its QEMU runs)"
            ),
            Unfit::HostCpu {
                need,
                have: Some(have),
            } => write!(
                f,
                "its CPU is '{have}' and the VM runs with its host's own CPU, '{need}' (a \
                 cluster CPU baseline lets VMs created under it move between different CPUs)"
            ),
            Unfit::HostCpu { need, have: None } => write!(
                f,
                "it did not say its CPU and the VM runs with its host's own CPU, '{need}'"
            ),
            Unfit::Accel { kvm, have } => {
                let name = |k: bool| if k { "KVM" } else { "TCG" };
                match have {
                    Some(h) => write!(
                        f,
                        "it runs guests under {} and the VM needs {} (a VM with the host's own \
                         CPU needs KVM; a live migration cannot change the accelerator)",
                        name(*h),
                        name(*kvm)
                    ),
                    None => write!(
                        f,
                        "it did not say how it runs guests and the VM needs {}",
                        name(*kvm)
                    ),
                }
            }
            Unfit::PaddedRam { need } => {
                let (vm, host) = if *need {
                    ("before 9.0", "9.0 or later (or an unknown QEMU)")
                } else {
                    ("9.0 or later", "before 9.0 (or an unknown QEMU)")
                };
                write!(
                    f,
                    "its QEMU under TCG is {host} and the VM's is {vm}: their guest memory sizes \
                     differ (a QEMU before 9.0 gets it padded), so a live migration cannot go \
                     between them; a stop and a start can"
                )
            }
            Unfit::MachineType { machine } => write!(
                f,
                "its QEMU does not offer the VM's machine type '{machine}' (an older QEMU, or it \
                 did not say what its QEMU runs)"
            ),
            Unfit::Disconnected => f.write_str("its agent is disconnected"),
            Unfit::Maintenance => f.write_str("it is in maintenance"),
            Unfit::Source => f.write_str("the VM runs there already"),
            Unfit::MustRule { rules } => {
                let s = if rules.len() == 1 { "" } else { "s" };
                write!(f, "the VM there would break must-rule{s} {rules}")
            }
            Unfit::Capacity(s) => s.fmt(f),
        }
    }
}

/// Which capability a VM lacks on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Trunk,
    Mtu,
    Cpu,
    HostCpu,
    Accel,
    Padded,
    Machine,
}

/// Test 1 of the check: the first capability the VM needs and the host lacks.
fn caps_gap(caps: &HostCaps, needs: &VmNeeds) -> Option<Gap> {
    if !needs.vlan_networks.is_empty() && !caps.vlan_trunk {
        return Some(Gap::Trunk);
    }
    if let Some(o) = &needs.overlay {
        if caps.underlay_mtu < o.underlay_mtu() {
            return Some(Gap::Mtu);
        }
    }
    if let Some(model) = &needs.cpu_model {
        if !caps.cpu_models.contains(model) {
            return Some(Gap::Cpu);
        }
    }
    if let Some(cpu) = &needs.host_cpu {
        if caps.host_cpu.as_ref() != Some(cpu) {
            return Some(Gap::HostCpu);
        }
    }
    if let Some(kvm) = needs.kvm {
        if caps.kvm != Some(kvm) {
            return Some(Gap::Accel);
        }
    }
    if let Some(padded) = needs.padded_ram {
        if caps.padded_ram != Some(padded) {
            return Some(Gap::Padded);
        }
    }
    match &needs.machine_type {
        Some(m) if !caps.machine_types.contains(m) => Some(Gap::Machine),
        _ => None,
    }
}

/// Test 1 of the check with its reason: capabilities the VM needs and the host lacks, if any.
pub(crate) fn caps_unfit(caps: &HostCaps, needs: &VmNeeds) -> Option<Unfit> {
    Some(match caps_gap(caps, needs)? {
        Gap::Trunk => Unfit::NoTrunk {
            networks: Quoted(needs.vlan_networks.clone()),
        },
        Gap::Mtu => {
            let o = needs.overlay.as_ref()?;
            Unfit::UnderlayMtu {
                have: caps.underlay_mtu,
                need: o.underlay_mtu(),
                network: o.network.clone(),
                network_mtu: o.mtu,
            }
        }
        Gap::Cpu => Unfit::CpuModel {
            model: needs.cpu_model.clone()?,
        },
        Gap::HostCpu => Unfit::HostCpu {
            need: needs.host_cpu.clone()?,
            have: caps.host_cpu.clone(),
        },
        Gap::Accel => Unfit::Accel {
            kvm: needs.kvm?,
            have: caps.kvm,
        },
        Gap::Padded => Unfit::PaddedRam {
            need: needs.padded_ram?,
        },
        Gap::Machine => Unfit::MachineType {
            machine: needs.machine_type.clone()?,
        },
    })
}

/// What the check reads about a host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostView<'a> {
    pub capacity: HostCapacity,
    pub ratios: AllocationRatios,
    pub allocated_vcpus: u64,
    pub allocated_memory_mib: u64,
    pub eligible: Eligibility,
    pub caps: &'a HostCaps,
}

impl<'a> HostView<'a> {
    /// The view of a placement input with capabilities `caps`.
    pub fn of(h: &HostInput, caps: &'a HostCaps) -> HostView<'a> {
        HostView {
            capacity: h.capacity,
            ratios: h.ratios,
            allocated_vcpus: u64::from(h.allocated_vcpus),
            allocated_memory_mib: h.allocated_memory_mib,
            eligible: h.eligible,
            caps,
        }
    }

    /// Memory (MiB) and vCPUs free for VMs: allocatable minus allocated minus reserve.
    pub fn free(&self) -> (u64, u64) {
        let r = &self.caps.reserve;
        (
            allocatable_memory_mib(&self.capacity, &self.ratios)
                .saturating_sub(self.allocated_memory_mib)
                .saturating_sub(r.memory_mib),
            u64::from(allocatable_vcpus(&self.capacity, &self.ratios))
                .saturating_sub(self.allocated_vcpus)
                .saturating_sub(u64::from(r.vcpus)),
        )
    }

    /// What the host lacks for `vcpus` and `memory_mib` more (test 4 of the check).
    pub fn shortfall(&self, vcpus: u32, memory_mib: u64) -> Option<Shortfall> {
        let r = &self.caps.reserve;
        let mem_alloc = allocatable_memory_mib(&self.capacity, &self.ratios);
        let mem_need = self
            .allocated_memory_mib
            .saturating_add(memory_mib)
            .saturating_add(r.memory_mib);
        let memory = (mem_need > mem_alloc).then(|| MemoryShort {
            short_mib: mem_need - mem_alloc,
            allocated_mib: self.allocated_memory_mib,
            allocatable_mib: mem_alloc,
            physical_mib: self.capacity.memory_mib,
            ratio: self.ratios.memory,
            reserved_mib: r.memory_mib,
        });
        let cpu_alloc = allocatable_vcpus(&self.capacity, &self.ratios);
        let cpu_need = self
            .allocated_vcpus
            .saturating_add(u64::from(vcpus))
            .saturating_add(u64::from(r.vcpus));
        let cpus = (cpu_need > u64::from(cpu_alloc)).then(|| VcpuShort {
            short: cpu_need - u64::from(cpu_alloc),
            allocated: self.allocated_vcpus,
            allocatable: cpu_alloc,
            cores: self.capacity.cores,
            ratio: self.ratios.cpu,
            reserved: r.vcpus,
        });
        (memory.is_some() || cpus.is_some()).then_some(Shortfall {
            memory,
            vcpus: cpus,
        })
    }

    /// The check (see the module doc). `maintenance_ok`: a VM already placed on the host may
    /// start there in maintenance. `must_rules` names the must-rules the VM would break there;
    /// it is asked only when the first two tests pass.
    pub fn check(
        &self,
        vcpus: u32,
        memory_mib: u64,
        needs: &VmNeeds,
        maintenance_ok: bool,
        must_rules: impl FnOnce() -> Vec<String>,
    ) -> Result<(), Unfit> {
        if let Some(u) = caps_unfit(self.caps, needs) {
            return Err(u);
        }
        match self.eligible {
            Eligibility::Ok => {}
            Eligibility::Disconnected => return Err(Unfit::Disconnected),
            Eligibility::Maintenance if !maintenance_ok => return Err(Unfit::Maintenance),
            Eligibility::Maintenance => {}
        }
        let rules = must_rules();
        if !rules.is_empty() {
            return Err(Unfit::MustRule {
                rules: Quoted(rules),
            });
        }
        match self.shortfall(vcpus, memory_mib) {
            Some(s) => Err(Unfit::Capacity(Box::new(s))),
            None => Ok(()),
        }
    }

    /// [`HostView::check`]`.is_ok()`, without building the reason (for hot loops). `forbidden`
    /// says whether a must-rule forbids the host.
    pub fn fits(
        &self,
        vcpus: u32,
        memory_mib: u64,
        needs: &VmNeeds,
        maintenance_ok: bool,
        forbidden: impl FnOnce() -> bool,
    ) -> bool {
        caps_gap(self.caps, needs).is_none()
            && match self.eligible {
                Eligibility::Ok => true,
                Eligibility::Disconnected => false,
                Eligibility::Maintenance => maintenance_ok,
            }
            && !forbidden()
            && self.shortfall(vcpus, memory_mib).is_none()
    }
}

/// Whether `host` (with capabilities `caps`) can take `vm` (needing `needs`), rules aside: the
/// crate's one fit check without its must-rule test.
pub fn check(
    host: &HostInput,
    caps: &HostCaps,
    vm: &VmRequest,
    needs: &VmNeeds,
) -> Result<(), Unfit> {
    HostView::of(host, caps).check(vm.vcpus, vm.memory_mib, needs, false, Vec::new)
}

/// Hosts that cannot take a VM for the same reason.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfitGroup {
    /// The reason; for capacity, the shortfall of the host closest to fitting (the first).
    pub reason: Unfit,
    /// The hosts, in the order they were checked (for capacity, the closest first).
    pub hosts: Vec<String>,
}

/// Why no host can take a VM: every host checked, grouped by reason.
#[derive(Debug, Clone, PartialEq)]
pub struct NoHost {
    /// The VM.
    pub vm: String,
    /// Its vCPUs.
    pub vcpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// Groups in the order of the check's tests (capabilities first, capacity last); hosts
    /// whose capacity falls short form one group.
    pub groups: Vec<UnfitGroup>,
}

/// Names shown per group before "and N more".
const SHOWN: usize = 4;

impl NoHost {
    /// The explanation for `vm` from why each host cannot take it.
    pub fn new(vm: &VmRequest, reasons: impl IntoIterator<Item = (String, Unfit)>) -> NoHost {
        let mut groups: Vec<UnfitGroup> = Vec::new();
        let mut capacity: Option<usize> = None;
        for (host, reason) in reasons {
            if let Unfit::Capacity(s) = &reason {
                match capacity {
                    Some(g) => {
                        let grp = &mut groups[g];
                        let closer = match &grp.reason {
                            Unfit::Capacity(best) => s.distance() < best.distance(),
                            _ => false,
                        };
                        if closer {
                            grp.reason = reason;
                            grp.hosts.insert(0, host);
                        } else {
                            grp.hosts.push(host);
                        }
                    }
                    None => {
                        capacity = Some(groups.len());
                        groups.push(UnfitGroup {
                            reason,
                            hosts: vec![host],
                        });
                    }
                }
                continue;
            }
            match groups.iter_mut().find(|g| g.reason == reason) {
                Some(g) => g.hosts.push(host),
                None => groups.push(UnfitGroup {
                    reason,
                    hosts: vec![host],
                }),
            }
        }
        // Stable: groups of one rank keep the order their reasons first appeared in.
        groups.sort_by_key(|g| g.reason.rank());
        NoHost {
            vm: vm.vm.clone(),
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            groups,
        }
    }

    /// Number of hosts named.
    pub fn hosts(&self) -> usize {
        self.groups.iter().map(|g| g.hosts.len()).sum()
    }

    /// The reason given for `host`, if it is named.
    pub fn reason_for(&self, host: &str) -> Option<&Unfit> {
        self.groups
            .iter()
            .find(|g| g.hosts.iter().any(|h| h == host))
            .map(|g| &g.reason)
    }

    /// True when every host named falls short only of capacity.
    pub fn only_capacity(&self) -> bool {
        self.groups
            .iter()
            .all(|g| matches!(g.reason, Unfit::Capacity(_)))
    }
}

impl fmt::Display for NoHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no host can take VM '{}' ({} vCPU, {} MiB): ",
            self.vm, self.vcpus, self.memory_mib
        )?;
        if self.groups.is_empty() {
            return f.write_str("there is no host");
        }
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let names = g.hosts[..g.hosts.len().min(SHOWN)].join(", ");
            let more = g.hosts.len().saturating_sub(SHOWN);
            if more > 0 {
                write!(f, "{names} and {more} more")?;
            } else {
                f.write_str(&names)?;
            }
            match &g.reason {
                Unfit::Capacity(s) if g.hosts.len() > 1 => {
                    write!(f, ": short of capacity (closest, {}: {s})", g.hosts[0])?
                }
                reason => write!(f, ": {reason}")?,
            }
        }
        Ok(())
    }
}

/// What fit knows beyond capacity, by name: each host's capabilities and each VM's needs. It
/// travels beside a [`crate::model::ClusterModel`]. A host not listed has [`BASIC_HOST`]'s
/// capabilities, a VM not listed needs nothing: an empty table changes no decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitTable {
    /// Capabilities per host name.
    pub hosts: BTreeMap<String, HostCaps>,
    /// Needs per VM name.
    pub vms: BTreeMap<String, VmNeeds>,
}

impl FitTable {
    /// The capabilities of `host`.
    pub fn caps(&self, host: &str) -> &HostCaps {
        self.hosts.get(host).unwrap_or(&BASIC_HOST)
    }

    /// The needs of `vm`.
    pub fn needs(&self, vm: &str) -> &VmNeeds {
        self.vms.get(vm).unwrap_or(&NO_NEEDS)
    }
}

#[cfg(test)]
mod tests;
