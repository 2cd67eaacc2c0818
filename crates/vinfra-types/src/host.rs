//! A hypervisor host: capacity, allocation ratios, usage.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which accelerator a host's VMs run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// Hardware virtualization: a real guest booted under it in the probe.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

/// Physical capacity of a host, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostCapacity {
    /// Logical CPUs.
    pub cores: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
}

/// What a host actually uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostUsage {
    /// CPU busy, in cores, over the last report interval.
    pub cpu_cores: f64,
    /// Memory in use (total minus available), MiB.
    pub memory_used_mib: u64,
}

/// Allocation (over-commit) ratios: how much virtual CPU and memory may be placed per physical unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationRatios {
    /// vCPUs per physical core (e.g. 4.0).
    pub cpu: f64,
    /// Guest memory per physical memory (e.g. 1.5; 1.0 = no over-allocation).
    pub memory: f64,
}

impl Default for AllocationRatios {
    fn default() -> Self {
        AllocationRatios {
            cpu: 4.0,
            memory: 1.0,
        }
    }
}

/// Largest allocation ratio accepted.
pub const MAX_RATIO: f64 = 100.0;

impl AllocationRatios {
    /// Ratios must be finite, at least 0.1 and at most [`MAX_RATIO`].
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [("cpu", self.cpu), ("memory", self.memory)] {
            if !v.is_finite() || !(0.1..=MAX_RATIO).contains(&v) {
                return Err(format!(
                    "{what} ratio must be between 0.1 and {MAX_RATIO}, got {v}"
                ));
            }
        }
        Ok(())
    }
}

/// Connection state of a host's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// The agent is connected and reporting.
    Connected,
    /// The agent's connection is lost.
    Disconnected,
}

/// A host's guard (`vinfra guard`, the fence holder every QEMU of the host runs under) as its
/// agent last saw it. HA restarts a host's VMs elsewhere only when its guard's lease shows the
/// host stopped, so a host without one is not protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuardView {
    /// The guard's lease incarnation (a new one every time a guard starts).
    pub incarnation: u64,
    /// The counter of the guard's last successful lease write (it rises every renewal).
    pub lease_counter: u64,
    /// How long ago the guard's last successful lease write started, milliseconds; `null`
    /// before its first.
    pub renewal_age_ms: Option<u64>,
    /// How often the guard self-fenced (killed every QEMU of the host) since it started.
    pub self_fences: u32,
    /// The guard counts the host isolated now (console contact lost while the lease renews,
    /// or the agent gone past its grace).
    pub isolated: bool,
}

/// A host as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostSummary {
    /// The host's name (its certificate's common name).
    pub name: String,
    /// Address the host's agent and migrations use.
    pub address: String,
    /// Whether its agent is connected.
    pub status: HostStatus,
    /// How it runs guests (KVM or TCG), once reported.
    pub accel: Option<Accel>,
    /// Its QEMU version, once reported.
    pub qemu_version: Option<String>,
    /// Its CPU and the CPU models and machine types its QEMU offers, as its agent said at its
    /// last connection; `null` before (or from an agent that does not say).
    #[serde(default)]
    pub platform: Option<HostPlatform>,
    /// What the host offers VMs.
    pub capacity: HostCapacity,
    /// Ratios in force (host override, else the cluster default).
    pub ratios: AllocationRatios,
    /// Host-specific override, if any.
    pub ratio_override: Option<AllocationRatios>,
    /// Sum of vCPUs of VMs placed here that should run.
    pub allocated_vcpus: u32,
    /// Sum of memory of VMs placed here that should run, MiB.
    pub allocated_memory_mib: u64,
    /// What placement may hand out: capacity × ratio.
    pub allocatable_vcpus: u32,
    /// What placement may hand out of memory: capacity × ratio, MiB.
    pub allocatable_memory_mib: u64,
    /// What the host uses now.
    pub usage: HostUsage,
    /// VMs placed on the host.
    pub vm_count: u32,
    /// Seconds since the last heartbeat.
    pub last_seen_s: Option<u64>,
    /// In maintenance: placement skips it and the balancer moves its VMs away.
    pub maintenance: bool,
    /// The interface of the host's 802.1Q trunk to the physical network, as its agent last
    /// reported it (`vinfra agent --trunk-interface`); `null` when it has none. Only hosts with
    /// a trunk take VMs with NICs on VLAN networks.
    #[serde(default)]
    pub trunk: Option<String>,
    /// IP MTU of the host's underlay, as its agent last reported it (`vinfra agent
    /// --underlay-mtu`; 1500 for agents that do not report it). Only hosts whose underlay MTU
    /// is at least an overlay network's MTU + 50 (VXLAN encapsulation) take VMs with NICs on it.
    #[serde(default = "crate::network::default_underlay_mtu")]
    pub underlay_mtu: u32,
    /// Whether the host has an out-of-band fence command (the command itself is never shown:
    /// it may hold credentials).
    #[serde(default)]
    pub fence_command_set: bool,
    /// When the host was last fenced (its fence command exited 0), seconds since the Unix
    /// epoch; cleared when its agent connects again.
    #[serde(default)]
    pub fenced_at: Option<u64>,
    /// The host's guard, as its agent last reported it; `null` when the host runs none (or it
    /// did not answer): HA cannot protect the host's VMs then.
    #[serde(default)]
    pub guard: Option<GuardView>,
}

/// What a host's QEMU runs guests as: the host's CPU, and the CPU models and machine types its
/// QEMU offers with the host's accelerator. Its agent finds them out at start (QEMU's
/// `query-cpu-definitions` and `query-machines`) and says them at each connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostPlatform {
    /// The host CPU's model name (`/proc/cpuinfo`), e.g. `Intel(R) Xeon(R) Gold 6338 CPU @
    /// 2.00GHz`: VMs that run with the host's own CPU (no cluster CPU baseline, under KVM)
    /// move only between hosts whose CPU has the same name.
    pub cpu_name: String,
    /// The QEMU CPU models that run here with every feature they name and that QEMU calls
    /// migration-safe (so not `host` or `max`), sorted: the models a cluster CPU baseline may
    /// name.
    pub cpu_models: Vec<String>,
    /// The versioned q35 machine types QEMU offers (`pc-q35-7.2`, …), oldest first.
    pub machine_types: Vec<String>,
    /// The versioned machine type `q35` stands for in this QEMU (its newest).
    pub default_machine_type: String,
}

impl HostPlatform {
    /// Whether this host runs a VM of `platform` under accelerator `accel`: its CPU model (for
    /// `host`: KVM) and its machine type; `Err` says what it lacks. (That a live migration
    /// keeps the CPU, for `host` its name, is the console's to check: it knows the source.)
    pub fn runs(&self, accel: Accel, platform: &crate::VmPlatform) -> Result<(), String> {
        if platform.cpu_model == crate::vm::HOST_CPU_MODEL {
            if accel != Accel::Kvm {
                return Err("it runs guests under TCG, which has no host CPU model".into());
            }
        } else if !self.cpu_models.contains(&platform.cpu_model) {
            return Err(format!(
                "its QEMU does not offer CPU model '{}' with all its features",
                platform.cpu_model
            ));
        }
        if !self.machine_types.contains(&platform.machine_type) {
            return Err(format!(
                "its QEMU does not offer machine type '{}'",
                platform.machine_type
            ));
        }
        Ok(())
    }
}

/// True when QEMU `version` (`major.minor…`) has the TCG dirty-tracking bug QEMU 9.0 fixed
/// ("physmem: Fix migration dirty bitmap coherency with TCG memory access"): a store through a
/// TCG TLB entry made before the migration's bitmap was cleared sets no dirty bit, so the page
/// is not sent again. KVM tracks dirty pages itself and is not affected. Under TCG the agent
/// of such a QEMU pads its guests' memory (docs/design.md, "A QEMU bug and how the agent avoids
/// it"), so a VM moves live only between hosts that agree on it.
pub fn tcg_migration_loses_writes(version: &str) -> bool {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    major.is_some_and(|m| m < 9)
}

/// Whether a host under `accel` with QEMU `qemu_version` pads its guests' memory
/// ([`tcg_migration_loses_writes`] under TCG); `None` under KVM or when either is unknown.
pub fn pads_guest_ram(accel: Option<Accel>, qemu_version: Option<&str>) -> Option<bool> {
    match (accel?, qemu_version?) {
        (Accel::Tcg, v) => Some(tcg_migration_loses_writes(v)),
        (Accel::Kvm, _) => None,
    }
}

/// The version in a versioned q35 machine type (`pc-q35-7.2` → `[7, 2]`), for ordering them;
/// `None` for other names.
pub fn q35_version(machine_type: &str) -> Option<Vec<u32>> {
    machine_type
        .strip_prefix("pc-q35-")?
        .split('.')
        .map(|p| p.parse().ok())
        .collect()
}
