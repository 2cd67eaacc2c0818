//! `vinfra vm …`: list, show, create, set (the HA policy), power actions, delete, live migration
//! (with its progress bar), the serial console; `vinfra vm floating-ip` is in `floating_ip`.
//!
//! Create, start, stop, reboot, delete, migrate and a migration's cancel answer a task: each
//! command follows it to its end (`follow`), or prints its number with `--no-wait`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use vinfra_client::Client;
use vinfra_types::api::{
    CreateVmRequest, CreatedVms, MigrateVmRequest, StopVmRequest, UpdateNicRequest, UpdateVmRequest,
};
use vinfra_types::ha::{HaPriority, VmHa, VmHaUpdate};
use vinfra_types::{BootSource, DiskSpec, NicSpec, PowerState, VmSpec, VmSummary};

use super::floating_ip::{self, FloatingIpCommand};
use crate::config::ConnectionOverrides;
use crate::follow;
use crate::output::{self, Output};
use crate::parse;
use crate::rest::{check_name, confirm, show, RestCommandError};

/// `--state`: a VM power state as the API names it.
fn parse_state(s: &str) -> Result<PowerState, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!(
            "expected running, paused, stopped, incoming, migrating, crashed or unknown, got \
             '{s}'"
        )
    })
}

/// `vinfra vm …`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List VMs (all, or those on a host, in a state, on a network).
    List {
        /// Only the VMs placed on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only the VMs in this state (running, stopped, paused, crashed, unknown, …).
        #[arg(long, value_parser = parse_state)]
        state: Option<PowerState>,
        /// Only the VMs with a NIC on this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Show a VM.
    Show {
        /// The VM.
        name: String,
    },
    /// Create a VM (and start it unless --no-start).
    Create(Box<VmCreateArgs>),
    /// Change a VM's HA policy (only what is given changes).
    Set(VmSetArgs),
    /// A VM's NICs.
    #[command(subcommand)]
    Nic(VmNicCommand),
    /// A VM's floating IPs (1:1 NAT on its router's edge).
    #[command(subcommand, name = "floating-ip")]
    FloatingIp(FloatingIpCommand),
    /// Start a VM.
    Start {
        /// The VM.
        name: String,
        /// Print the task's number and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop a VM (ACPI power button, then forced after the timeout).
    Stop {
        /// The VM.
        name: String,
        /// Power off at once.
        #[arg(long)]
        force: bool,
        /// How long the guest may take to power off (e.g. 30s, 2m).
        #[arg(long, value_parser = parse::stop_timeout, allow_hyphen_values = true)]
        timeout: Option<Duration>,
        /// Print the task's number and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Reboot a VM.
    Reboot {
        /// The VM.
        name: String,
        /// Print the task's number and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a stopped VM and its disks (asks first on a terminal).
    Delete {
        /// The VM.
        name: String,
        /// Also when it runs (stopped at once, without waiting for its guest) or its host is
        /// disconnected (removed there when the host comes back).
        #[arg(long)]
        force: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the task's number and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Live-migrate a VM (shows progress until it ends).
    Migrate {
        /// The VM.
        name: String,
        /// Destination host (default: the console picks).
        #[arg(long, conflicts_with = "cancel")]
        to: Option<String>,
        /// Cancel the VM's running migration (follows it to its end, which says whether the
        /// cancel took).
        #[arg(long)]
        cancel: bool,
        /// Print the task's number and return once the migration has started (with
        /// `--cancel`: once the cancel is asked).
        #[arg(long)]
        no_wait: bool,
    },
    /// A VM's CPU and memory over the last hour (one row per 10 s while it runs).
    Usage {
        /// The VM.
        name: String,
    },
    /// Print the end of a VM's serial console; with --follow, what follows as it comes, and
    /// type each line read on standard input.
    Console {
        /// The VM.
        name: String,
        /// How many bytes from the end.
        #[arg(long, default_value_t = 16384, value_parser = |s: &str| parse::bounded(s, "bytes", 1, 16 << 20))]
        bytes: u64,
        /// Keep printing what the guest writes (until interrupted, e.g. Ctrl-C), and send
        /// each line typed on standard input to the console (Enter as a carriage return).
        #[arg(long)]
        follow: bool,
    },
}

/// An HA restart priority on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Restarted first.
    Highest,
    /// Before medium and low.
    High,
    /// The default.
    Medium,
    /// Restarted last.
    Low,
}

impl From<PriorityArg> for HaPriority {
    fn from(p: PriorityArg) -> Self {
        match p {
            PriorityArg::Highest => HaPriority::Highest,
            PriorityArg::High => HaPriority::High,
            PriorityArg::Medium => HaPriority::Medium,
            PriorityArg::Low => HaPriority::Low,
        }
    }
}

/// `--ha-start-after VM|none` of `vinfra vm set`: a VM, or none (the ordering removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartAfterArg(pub Option<String>);

fn parse_start_after(v: &str) -> Result<StartAfterArg, parse::ParseError> {
    parse::vm_or_none(v).map(StartAfterArg)
}

/// `vinfra vm set`.
#[derive(Debug, Args)]
pub struct VmSetArgs {
    /// The VM.
    pub name: String,
    /// HA: restart the VM on another host when its host fails.
    #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
    pub ha: Option<bool>,
    /// HA restart priority.
    #[arg(long, value_enum, value_name = "PRIORITY")]
    pub ha_priority: Option<PriorityArg>,
    /// Restart the VM only after this VM runs; `none` removes the ordering.
    #[arg(long, value_parser = parse_start_after, value_name = "VM|none")]
    pub ha_start_after: Option<StartAfterArg>,
}

/// Builds the PATCH of `vinfra vm set`, checking it first.
pub fn set_request(a: &VmSetArgs) -> Result<UpdateVmRequest, RestCommandError> {
    check_name("VM", &a.name)?;
    let ha = VmHaUpdate {
        enabled: a.ha,
        priority: a.ha_priority.map(HaPriority::from),
        start_after: a.ha_start_after.clone().map(|s| s.0),
    };
    if ha.is_empty() {
        return Err(RestCommandError::NothingToChange(
            "--ha, --ha-priority and/or --ha-start-after",
        ));
    }
    Ok(UpdateVmRequest { ha: Some(ha) })
}

/// `vinfra vm nic …`.
#[derive(Debug, Subcommand)]
pub enum VmNicCommand {
    /// Change a NIC's security groups, port security, allowed addresses or QoS (only what is
    /// given changes; a QoS change applies to the running VM at once).
    Set(VmNicSetArgs),
}

/// `vinfra vm nic set`.
#[derive(Debug, Args)]
pub struct VmNicSetArgs {
    /// The VM.
    pub vm: String,
    /// The NIC's index in the VM's spec (from 0).
    pub index: usize,
    /// Port security: the NIC sends only from its own addresses.
    #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
    pub port_security: Option<bool>,
    /// Allowed address pairs, `+`-separated (replaces the list); `none` removes them.
    #[arg(long, value_parser = parse_allow, value_name = "IP[/LEN][@MAC][+…]|none")]
    pub allow: Option<AllowArg>,
    /// Security groups, comma-separated (replaces the list); `none`: the NIC is not filtered.
    #[arg(long, value_parser = parse_groups, value_name = "SG,…|none")]
    pub security_groups: Option<GroupsArg>,
    /// Rate limit both ways, bits/s with k, M, G (decimal: 100M = 100,000,000); `none`:
    /// unlimited.
    #[arg(long, value_parser = parse_rate, value_name = "RATE|none")]
    pub rate: Option<RateArg>,
    /// Rate limit of what the VM sends (overrides --rate that way).
    #[arg(long, value_parser = parse_rate, value_name = "RATE|none")]
    pub egress_rate: Option<RateArg>,
    /// Rate limit of what goes to the VM (overrides --rate that way).
    #[arg(long, value_parser = parse_rate, value_name = "RATE|none")]
    pub ingress_rate: Option<RateArg>,
    /// Burst of the rate limits, bytes with K, M, G (binary: 1M = 1,048,576); default 10 ms at
    /// the rate, at least 16K.
    #[arg(long, value_parser = parse::burst, value_name = "BYTES")]
    pub burst: Option<u64>,
    /// Priority class under contention.
    #[arg(long, value_parser = parse::qos_priority, value_name = "low|normal|high")]
    pub priority: Option<vinfra_types::qos::NicPriority>,
    /// Share against NICs of the same class under contention, 1-100 (default 10).
    #[arg(long, value_parser = parse::qos_weight, value_name = "1-100")]
    pub weight: Option<u16>,
    /// DSCP written into the IPv4 packets the VM sends; `trust` keeps the guest's.
    #[arg(long, value_parser = parse_dscp, value_name = "0-63|trust")]
    pub dscp: Option<DscpArg>,
    /// Remove the NIC's QoS.
    #[arg(long, conflicts_with_all = ["rate", "egress_rate", "ingress_rate", "burst", "priority", "weight", "dscp"])]
    pub no_qos: bool,
}

/// `--rate RATE|none` and the like: bits per second, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateArg(pub Option<u64>);

fn parse_rate(v: &str) -> Result<RateArg, parse::ParseError> {
    parse::rate_or_none(v).map(RateArg)
}

/// `--dscp N|trust`: the DSCP to mark, or none (the guest's kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DscpArg(pub Option<u8>);

fn parse_dscp(v: &str) -> Result<DscpArg, parse::ParseError> {
    parse::dscp_or_trust(v).map(DscpArg)
}

impl VmNicSetArgs {
    /// The QoS flags given.
    pub fn qos_change(&self) -> parse::NicQosChange {
        parse::NicQosChange {
            rate: self.rate.map(|r| r.0),
            egress_rate: self.egress_rate.map(|r| r.0),
            ingress_rate: self.ingress_rate.map(|r| r.0),
            burst: self.burst,
            priority: self.priority,
            weight: self.weight,
            dscp: self.dscp.map(|d| d.0),
        }
    }
}

/// `--allow …|none` of `vinfra vm nic set`: the whole list of allowed address pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowArg(pub Vec<vinfra_types::AllowedAddressPair>);

fn parse_allow(v: &str) -> Result<AllowArg, parse::ParseError> {
    parse::allow_or_none(v).map(AllowArg)
}

/// `--security-groups …|none` of `vinfra vm nic set`: the whole list of security groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsArg(pub Vec<String>);

fn parse_groups(v: &str) -> Result<GroupsArg, parse::ParseError> {
    parse::groups_or_none(v).map(GroupsArg)
}

/// Builds the PATCH of `vinfra vm nic set`, checking it first. QoS flags change the QoS the
/// NIC has (`current`, read from the console first; the API takes the whole of it).
pub fn nic_set_request(
    a: &VmNicSetArgs,
    current: Option<&NicSpec>,
) -> Result<UpdateNicRequest, RestCommandError> {
    check_name("VM", &a.vm)?;
    let change = a.qos_change();
    let qos = if a.no_qos {
        Some(None)
    } else if change.is_empty() {
        None
    } else {
        let old = current.and_then(|n| n.qos.as_ref());
        Some(
            change
                .apply(old)
                .map_err(|reason| RestCommandError::NicQos {
                    index: a.index,
                    reason,
                })?,
        )
    };
    let req = UpdateNicRequest {
        security_groups: a.security_groups.clone().map(|g| g.0),
        port_security: a.port_security,
        allowed_addresses: a.allow.clone().map(|a| a.0),
        qos,
    };
    if req.is_empty() {
        return Err(RestCommandError::NothingToChange(
            "--port-security, --allow, --security-groups, --rate, --egress-rate, \
             --ingress-rate, --burst, --priority, --weight, --dscp and/or --no-qos",
        ));
    }
    Ok(req)
}

/// `vinfra vm create`.
#[derive(Debug, Args)]
pub struct VmCreateArgs {
    /// The VM's name.
    pub name: String,
    /// Virtual CPUs (1-256).
    #[arg(long, value_parser = parse::vcpus, allow_hyphen_values = true)]
    pub vcpus: u32,
    /// Memory: 512M, 2G, … (a plain number is MiB).
    #[arg(long, value_parser = parse::memory_mib, allow_hyphen_values = true)]
    pub memory: u64,
    /// Host to place the VM on (default: the console picks).
    #[arg(long)]
    pub host: Option<String>,
    /// Kernel file in the datastore's images/ (direct kernel boot).
    #[arg(long, conflicts_with = "boot_disk")]
    pub kernel: Option<String>,
    /// Initrd file in the datastore's images/.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<String>,
    /// Kernel command line.
    #[arg(long, requires = "kernel", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Boot from the first disk.
    #[arg(long)]
    pub boot_disk: bool,
    /// A disk: name=NAME[,image=FILE][,size=10G] (repeatable).
    #[arg(long, value_parser = parse::disk)]
    pub disk: Vec<DiskSpec>,
    /// A NIC: NETWORK[,ip=A.B.C.D][,mac=xx:xx:…][,port-security=on|off][,allow=IP[/LEN][@MAC][+…]]
    /// [,sg=GROUP[+…]][,rate=100M][,egress-rate=R][,ingress-rate=R][,burst=1M]
    /// [,priority=low|normal|high][,weight=1-100][,dscp=0-63|trust] (repeatable).
    #[arg(long, value_parser = parse::nic)]
    pub nic: Vec<NicSpec>,
    /// Create this many VMs alike (1-1000), named NAME-1 … NAME-N: placed one after the
    /// other, created on their hosts at once, one task for all. A NIC's ip= and mac= are
    /// refused with it (the pool gives each VM its own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: Option<u32>,
    /// Create the VM without starting it.
    #[arg(long)]
    pub no_start: bool,
    /// Print the task's number and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// HA: restart the VM on another host when its host fails (default off).
    #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
    pub ha: Option<bool>,
    /// HA restart priority (default medium).
    #[arg(long, value_enum, value_name = "PRIORITY")]
    pub ha_priority: Option<PriorityArg>,
    /// Restart the VM only after this VM runs.
    #[arg(long, value_name = "VM")]
    pub ha_start_after: Option<String>,
}

/// Builds the create request from the arguments, checking it like the console will.
pub fn create_request(a: &VmCreateArgs) -> Result<CreateVmRequest, RestCommandError> {
    check_name("VM", &a.name)?;
    if let Some(h) = &a.host {
        check_name("host", h)?;
    }
    if let Some(after) = &a.ha_start_after {
        check_name("VM", after)?;
    }
    let boot = match (&a.kernel, a.boot_disk) {
        (Some(kernel), _) => BootSource::Kernel {
            kernel: kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone().unwrap_or_default(),
        },
        (None, true) => BootSource::Disk,
        (None, false) if !a.disk.is_empty() => BootSource::Disk,
        (None, false) => return Err(RestCommandError::NoBoot),
    };
    let spec = VmSpec {
        name: a.name.clone(),
        vcpus: a.vcpus,
        memory_mib: a.memory,
        boot,
        disks: a.disk.clone(),
        nics: a.nic.clone(),
        ha: VmHa {
            enabled: a.ha.unwrap_or(false),
            priority: a.ha_priority.map(HaPriority::from).unwrap_or_default(),
            start_after: a.ha_start_after.clone(),
        },
    };
    spec.validate().map_err(RestCommandError::Spec)?;
    if let Some(n) = a.count {
        // The longest name it gives must be a name too.
        check_name("VM", &format!("{}-{n}", a.name))?;
        if let Some(i) = a.nic.iter().position(|n| n.ip.is_some() || n.mac.is_some()) {
            return Err(RestCommandError::FixedNicWithCount(i));
        }
    }
    Ok(CreateVmRequest {
        spec,
        host: a.host.clone(),
        start: !a.no_start,
        count: a.count,
    })
}

/// `vinfra vm …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &VmCommand,
) -> Result<(), RestCommandError> {
    if let VmCommand::FloatingIp(c) = cmd {
        return floating_ip::run(conn, out, c);
    }
    if let VmCommand::Create(a) = cmd {
        let req = create_request(a)?;
        let api = conn.client()?;
        if a.no_wait {
            return follow::accepted(out, &api.create_vm_task(&req)?);
        }
        // One request when the create ends within the first wait.
        let task = api.create_vm_task_within(&req, follow::first_wait())?;
        if req.count.is_some() {
            let created: CreatedVms = follow::result(&api, task)?;
            return show(out, &created, |c| {
                let mut lines = vec![format!(
                    "{} VMs created{}",
                    c.vms.len(),
                    if req.start {
                        ", starting"
                    } else {
                        " (stopped)"
                    }
                )];
                lines.extend(
                    c.vms
                        .iter()
                        .map(|vm| format!("  {} on {}", vm.name, vm.host)),
                );
                lines.join("\n")
            });
        }
        let vm: VmSummary = follow::result(&api, task)?;
        return show(out, &vm, |vm| {
            format!(
                "VM {} created on {}{}",
                vm.name,
                vm.host,
                if req.start {
                    ", starting"
                } else {
                    " (stopped)"
                }
            )
        });
    }
    if let VmCommand::Set(a) = cmd {
        let req = set_request(a)?;
        let vm = conn.client()?.update_vm(&a.name, &req)?;
        return show(out, &vm, |vm| {
            format!("VM {}: HA {}", vm.name, vm.spec.ha.describe())
        });
    }
    if let VmCommand::Nic(VmNicCommand::Set(a)) = cmd {
        check_name("VM", &a.vm)?;
        let api = conn.client()?;
        // QoS flags change the NIC's QoS: read it first.
        let current = if a.qos_change().is_empty() {
            None
        } else {
            api.vm(&a.vm)?.spec.nics.get(a.index).cloned()
        };
        let req = nic_set_request(a, current.as_ref())?;
        let vm = api.update_nic(&a.vm, a.index, &req)?;
        return show(out, &vm, |vm| match vm.spec.nics.get(a.index) {
            Some(n) => format!(
                "VM {} nic {}: {}; qos {}",
                vm.name,
                a.index,
                output::nic(n),
                output::nic_qos(n)
            ),
            None => format!("VM {} nic {} changed", vm.name, a.index),
        });
    }
    match cmd {
        VmCommand::List { host, network, .. } => {
            if let Some(h) = host {
                check_name("host", h)?;
            }
            if let Some(n) = network {
                check_name("network", n)?;
            }
        }
        VmCommand::Create(_) | VmCommand::Set(_) | VmCommand::Nic(_) | VmCommand::FloatingIp(_) => {
        }
        VmCommand::Show { name }
        | VmCommand::Start { name, .. }
        | VmCommand::Stop { name, .. }
        | VmCommand::Reboot { name, .. }
        | VmCommand::Delete { name, .. }
        | VmCommand::Migrate { name, .. }
        | VmCommand::Usage { name }
        | VmCommand::Console { name, .. } => check_name("VM", name)?,
    }
    if let VmCommand::Migrate { to: Some(to), .. } = cmd {
        check_name("host", to)?;
    }
    let api = conn.client()?;
    match cmd {
        VmCommand::List {
            host,
            state,
            network,
        } => {
            let filter = vinfra_types::api::VmFilter {
                host: host.clone(),
                state: *state,
                network: network.clone(),
            };
            let vms = if filter.is_empty() {
                api.vms()?
            } else {
                api.vms_where(&filter)?
            };
            show(out, &vms, |v| output::vms(v))
        }
        VmCommand::Show { name } => {
            let vm = api.vm(name)?;
            if out == Output::Json || vm.spec.nics.is_empty() {
                return show(out, &vm, output::vm);
            }
            // The NICs' ports: read from the VM's host now; a host that cannot be asked says
            // why in place of the counters.
            let ports = api
                .vm_counters(name)
                .map_err(|e| vinfra_types::error::chain(&e));
            show(out, &vm, |vm| output::vm_with_ports(vm, &ports))
        }
        VmCommand::Create(_) | VmCommand::Set(_) | VmCommand::Nic(_) | VmCommand::FloatingIp(_) => {
            Ok(())
        }
        VmCommand::Start { name, no_wait } => {
            let task = api.start_vm_task(name)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            let vm: VmSummary = follow::result(&api, task)?;
            show(out, &vm, |_| format!("VM {name} started"))
        }
        VmCommand::Reboot { name, no_wait } => {
            let task = api.reboot_vm_task(name)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            let vm: VmSummary = follow::result(&api, task)?;
            show(out, &vm, |_| format!("VM {name} rebooting"))
        }
        VmCommand::Stop {
            name,
            force,
            timeout,
            no_wait,
        } => {
            let req = StopVmRequest {
                force: *force,
                timeout_s: timeout.map(|t| t.as_secs()),
            };
            let task = api.stop_vm_task(name, &req)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            if !*force && out != Output::Json && !task.state.is_final() {
                // What the stop waits for, and when it stops waiting.
                let wait = req
                    .timeout_s
                    .unwrap_or(vinfra_types::vm::STOP_TIMEOUT_DEFAULT_S);
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + wait;
                eprintln!(
                    "VM {name}: ACPI power button pressed, waiting for the guest to power off; \
                     forced off at {} UTC ({wait} s) if it has not",
                    output::timestamp(at)
                );
            }
            let vm: VmSummary = follow::result(&api, task)?;
            show(out, &vm, |_| format!("VM {name} stopped"))
        }
        VmCommand::Delete {
            name,
            force,
            yes,
            no_wait,
        } => {
            let how = if *force {
                ", stopping it first if it runs"
            } else {
                ""
            };
            // On a terminal the VM is looked up first: an unknown VM is said before any
            // question, a running one without --force is left to the console's refusal (which
            // says what to do), and the question says what is deleted.
            if !*yes && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                let vm = api.vm(name)?;
                if vm.desired != PowerState::Running || *force {
                    confirm(
                        &format!(
                            "Delete VM {name} ({} on {}) and its disks{how}?",
                            vm.state.as_str(),
                            vm.host
                        ),
                        false,
                    )?;
                }
            }
            let task = api.delete_vm_task(name, *force)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            let ended = follow::task(&api, task, None)?;
            vinfra_client::task_succeeded(&ended)?;
            show(out, &(), |_| format!("VM {name} deleted"))
        }
        VmCommand::Usage { name } => show(out, &api.vm_usage(name)?, output::usage::usage),
        VmCommand::Console {
            name,
            bytes,
            follow: true,
        } => console::follow(&api, out, name, *bytes),
        VmCommand::Console { name, bytes, .. } => {
            let log = api.console_log(name, Some(*bytes))?;
            show(out, &log, |log| log.text.trim_end_matches('\n').to_string())
        }
        VmCommand::Migrate {
            name,
            to,
            cancel,
            no_wait,
        } => migrate(&api, out, name, to.clone(), *cancel, *no_wait),
    }
}

/// `vinfra vm migrate`: starts the migration (or cancels it) and, unless `no_wait`, follows it
/// to its end; an end other than completed is an error (with `--cancel`, an end other than
/// cancelled).
fn migrate(
    api: &Client,
    out: Output,
    name: &str,
    to: Option<String>,
    cancel: bool,
    no_wait: bool,
) -> Result<(), RestCommandError> {
    if cancel {
        let task = api.cancel_migration_task(name)?;
        if no_wait {
            return follow::accepted(out, &task);
        }
        let ended = follow::task(api, task, None)?;
        return follow::cancel_end(out, api.migration_ended(name, &ended)?);
    }
    let request = MigrateVmRequest { to };
    if no_wait {
        let task = api.migrate_vm_task(name, &request)?;
        return follow::accepted(out, &task);
    }
    let started = api.migrate_vm(name, &request)?;
    let last = follow::migration(api, name, started)?;
    follow::migration_end(out, last)
}

mod console;
#[cfg(test)]
mod tests;
