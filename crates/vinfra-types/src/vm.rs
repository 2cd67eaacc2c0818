//! A VM: what the operator asked for ([`VmSpec`]) and what a host observes ([`VmObserved`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Largest vCPU count accepted for one VM.
pub const MAX_VCPUS: u32 = 256;
/// Largest memory accepted for one VM (16 TiB).
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
/// Smallest memory accepted for one VM.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest disk accepted (64 TiB).
pub const MAX_DISK_GIB: u64 = 64 * 1024;
/// Most disks one VM may have.
pub const MAX_DISKS: usize = 16;
/// Most NICs one VM may have.
pub const MAX_NICS: usize = 16;
/// Longest kernel command line accepted.
pub const MAX_CMDLINE: usize = 2048;

/// What an operator asks for when creating a VM. Validated by [`VmSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Cluster-unique name, a DNS label.
    pub name: String,
    /// Virtual CPUs (1..=256).
    pub vcpus: u32,
    /// Guest memory in MiB (16..=16 TiB).
    pub memory_mib: u64,
    /// How the guest boots.
    pub boot: BootSource,
    /// Disks, each a qcow2 overlay in the datastore.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// Network interfaces, each on a logical network (attached by the host's virtual switch).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// High availability: restart on another host when its host fails (default off).
    #[serde(default)]
    pub ha: crate::ha::VmHa,
}

/// How a VM boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BootSource {
    /// Direct kernel boot: kernel and initrd are file names in the datastore's `images/` directory.
    Kernel {
        /// The kernel's file name.
        kernel: String,
        /// The initrd's file name, if any.
        #[serde(default)]
        initrd: Option<String>,
        /// The kernel command line.
        #[serde(default)]
        cmdline: String,
    },
    /// Boot from the first disk (BIOS).
    Disk,
}

impl std::fmt::Display for BootSource {
    /// What the CLI's `vm show` and the web console's VM page say of it: `kernel K, initrd I,
    /// cmdline "C"` (the parts it has) or `first disk`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootSource::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                write!(f, "kernel {kernel}")?;
                if let Some(i) = initrd {
                    write!(f, ", initrd {i}")?;
                }
                if !cmdline.is_empty() {
                    write!(f, ", cmdline \"{cmdline}\"")?;
                }
                Ok(())
            }
            BootSource::Disk => f.write_str("first disk"),
        }
    }
}

/// One disk: a qcow2 overlay of a base image, or a blank qcow2 of `size_gib`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Disk name, a DNS label, unique within the VM.
    pub name: String,
    /// Base image file name in the datastore's `images/` directory (qcow2 or raw).
    #[serde(default)]
    pub image: Option<String>,
    /// Size in GiB: required for a blank disk; for an overlay, grows the disk beyond the image.
    #[serde(default)]
    pub size_gib: Option<u64>,
}

/// Most allowed address pairs one NIC may have.
pub const MAX_ALLOWED_ADDRESSES: usize = 16;

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// Logical network name.
    pub network: String,
    /// Unicast MAC address `xx:xx:xx:xx:xx:xx`, unique in the cluster; assigned when absent
    /// (`02:76:66:…`). The console records the final address here.
    #[serde(default)]
    pub mac: Option<String>,
    /// IPv4 address inside the network's subnet; the lowest free one is assigned when absent.
    /// The console records the final address here.
    #[serde(default)]
    pub ip: Option<String>,
    /// Port security: the NIC may send only from its MAC and address (and its
    /// `allowed_addresses`), may not answer ARP for others' addresses nor act as a DHCP server;
    /// its host's switch drops everything else and counts it. On unless `false` (a router or
    /// firewall appliance forwarding others' traffic); the console records the final value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// Further sources the NIC may send from with port security on (a virtual IP that
    /// keepalived moves between VMs, say), at most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<AllowedAddressPair>,
    /// The security groups the NIC is in, by name (at most 8, each once): its host's switch
    /// filters its traffic by their rules (see `security_group`). None: not filtered. Needs
    /// port security on (the rules match addresses the NIC could otherwise fake).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// QoS: rate limits each way, priority class, weight, DSCP marking (see `qos`), applied
    /// by the switch of whichever host runs the VM. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<crate::qos::NicQos>,
    /// An 802.1Q sub-interface of an earlier NIC of the VM (a trunk NIC): this NIC's network
    /// reaches the guest as frames tagged `vid` on that NIC, which the guest sees as a VLAN
    /// sub-interface (Linux: `ip link add link eth0 name eth0.10 type vlan id 10`). It has no
    /// virtio device of its own and uses its NIC's MAC; its address, port security and
    /// security groups are its own, its QoS its NIC's. Absent: a NIC of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<NicVlan>,
}

/// Where a sub-interface NIC rides: its NIC and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicVlan {
    /// The index, in the VM's `nics`, of the NIC that carries it: an earlier NIC that is no
    /// sub-interface itself.
    pub parent: usize,
    /// The 802.1Q VLAN ID, 1 to 4094, each once per NIC.
    pub vid: u16,
}

/// Why a sub-interface NIC was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicVlanError {
    /// The parent is not an earlier NIC.
    #[error("its NIC {0} is not an earlier NIC of the VM")]
    Parent(usize),
    /// The parent is a sub-interface itself.
    #[error("its NIC {0} is a sub-interface itself")]
    Nested(usize),
    /// The VLAN ID is out of range.
    #[error("VLAN ID {0} is not between 1 and 4094")]
    Vid(u16),
    /// Another sub-interface of the same NIC has the tag.
    #[error("NIC {parent} already carries VLAN ID {vid}")]
    Duplicate {
        /// The NIC.
        parent: usize,
        /// The tag.
        vid: u16,
    },
    /// The NIC or another of its sub-interfaces is on the same network (they share a MAC).
    #[error(
        "network '{0}' is already on NIC {1} or another of its sub-interfaces (they share one MAC)"
    )]
    Network(String, usize),
    /// A MAC other than the parent's.
    #[error("a sub-interface uses its NIC's MAC {0}")]
    Mac(String),
    /// QoS set on the sub-interface.
    #[error("QoS is set on its NIC (the sub-interfaces share its link)")]
    Qos,
}

impl NicSpec {
    /// Whether port security is on (it is unless turned off).
    pub fn port_security(&self) -> bool {
        self.port_security != Some(false)
    }

    /// Checks the NIC's security groups (NIC `index` in errors): valid names, each once, at
    /// most [`crate::security_group::MAX_NIC_GROUPS`], and port security on when there are any.
    pub fn validate_security_groups(&self, index: usize) -> Result<(), SpecError> {
        if self.security_groups.len() > crate::security_group::MAX_NIC_GROUPS {
            return Err(SpecError::TooManySecurityGroups(index));
        }
        for (i, g) in self.security_groups.iter().enumerate() {
            crate::validate_name(g)
                .map_err(|error| SpecError::NicSecurityGroup { index, error })?;
            if self.security_groups[..i].contains(g) {
                return Err(SpecError::DuplicateSecurityGroup {
                    index,
                    group: g.clone(),
                });
            }
        }
        if !self.security_groups.is_empty() && !self.port_security() {
            return Err(SpecError::SecurityGroupsWithoutPortSecurity(index));
        }
        Ok(())
    }
}

/// A source a NIC may send from besides its own address, with port security on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedAddressPair {
    /// An IPv4 address (`10.0.0.9`) or prefix (`10.0.0.0/29`, host bits zero).
    pub ip: String,
    /// The MAC it is sent from; the NIC's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl AllowedAddressPair {
    /// The prefix: its address and length (32 for an address).
    pub fn prefix(&self) -> Option<(std::net::Ipv4Addr, u8)> {
        let (ip, len) = match self.ip.split_once('/') {
            Some((ip, len)) => (ip, len.parse::<u8>().ok().filter(|l| *l <= 32)?),
            None => (self.ip.as_str(), 32),
        };
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (u32::from(ip) & !mask == 0).then_some((ip, len))
    }
}

/// Why a VM specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The VM's name is not a valid name.
    #[error("VM name: {0}")]
    Name(crate::NameError),
    /// The vCPU count is out of range.
    #[error("vcpus must be between 1 and {MAX_VCPUS}, got {0}")]
    Vcpus(u32),
    /// The memory is out of range.
    #[error("memory_mib must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB}, got {0}")]
    Memory(u64),
    /// The kernel's file name is not valid.
    #[error("boot: kernel: {0}")]
    Kernel(crate::NameError),
    /// The initrd's file name is not valid.
    #[error("boot: initrd: {0}")]
    Initrd(crate::NameError),
    /// The kernel command line is too long or has control characters.
    #[error("boot: cmdline must be printable and at most {MAX_CMDLINE} bytes")]
    Cmdline,
    /// Boot from disk without a disk.
    #[error("boot: boot from disk needs at least one disk")]
    NoBootDisk,
    /// More disks than allowed (the count given).
    #[error("disk '#{0}': at most {MAX_DISKS} disks")]
    TooManyDisks(usize),
    /// A disk's name is not a valid name.
    #[error("disk '{disk}': {error}")]
    DiskName {
        /// The disk's name as given.
        disk: String,
        /// What is wrong with it.
        error: crate::NameError,
    },
    /// Two disks have the same name.
    #[error("disk '{0}': duplicate disk name")]
    DuplicateDisk(String),
    /// A disk's image file name is not valid.
    #[error("disk '{disk}': image: {error}")]
    DiskImage {
        /// The disk.
        disk: String,
        /// What is wrong with the image's name.
        error: crate::NameError,
    },
    /// A disk of size 0.
    #[error("disk '{0}': size_gib must be at least 1")]
    DiskSizeZero(String),
    /// A disk larger than allowed.
    #[error("disk '{0}': size_gib must be at most {MAX_DISK_GIB}")]
    DiskTooLarge(String),
    /// A blank disk (no image) without a size.
    #[error("disk '{0}': a blank disk needs size_gib")]
    DiskWithoutSize(String),
    /// More NICs than allowed (the count given).
    #[error("nic {0}: at most {MAX_NICS} NICs")]
    TooManyNics(usize),
    /// A NIC's network name is not a valid name.
    #[error("nic {index}: network: {error}")]
    NicNetwork {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong with the name.
        error: crate::NameError,
    },
    /// A NIC's MAC address is not usable.
    #[error("nic {index}: {error}")]
    NicMac {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong with the address.
        error: crate::network::NetworkError,
    },
    /// A NIC's IPv4 address does not parse.
    #[error("nic {index}: bad IPv4 address '{ip}'")]
    NicIp {
        /// The NIC's index in the spec.
        index: usize,
        /// The address as given.
        ip: String,
    },
    /// An allowed address pair's address is not an IPv4 address or prefix with zero host bits.
    #[error(
        "nic {index}: allowed address '{ip}' is not an IPv4 address or prefix like 10.0.0.0/29"
    )]
    NicAllowedIp {
        /// The NIC's index in the spec.
        index: usize,
        /// The address as given.
        ip: String,
    },
    /// An allowed address pair's MAC does not parse or is not unicast.
    #[error("nic {index}: allowed address MAC: {error}")]
    NicAllowedMac {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong with it.
        error: crate::network::NetworkError,
    },
    /// More allowed address pairs than allowed on one NIC.
    #[error("nic {0}: at most {MAX_ALLOWED_ADDRESSES} allowed addresses")]
    TooManyAllowedAddresses(usize),
    /// Allowed address pairs on a NIC whose port security is off (it may send from anything).
    #[error("nic {0}: allowed addresses need port security on")]
    AllowedAddressesWithoutPortSecurity(usize),
    /// A NIC's security group name is not a valid name.
    #[error("nic {index}: security group: {error}")]
    NicSecurityGroup {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong with the name.
        error: crate::NameError,
    },
    /// A NIC in more security groups than allowed.
    #[error("nic {0}: at most {max} security groups", max = crate::security_group::MAX_NIC_GROUPS)]
    TooManySecurityGroups(usize),
    /// A NIC that names a security group twice.
    #[error("nic {index}: security group '{group}' is given twice")]
    DuplicateSecurityGroup {
        /// The NIC's index in the spec.
        index: usize,
        /// The group.
        group: String,
    },
    /// Security groups on a NIC whose port security is off (it may send from any address,
    /// which the groups' rules match on).
    #[error("nic {0}: security groups need port security on")]
    SecurityGroupsWithoutPortSecurity(usize),
    /// A NIC's QoS is out of bounds.
    #[error("nic {index}: qos: {error}")]
    NicQos {
        /// The NIC's index in the spec.
        index: usize,
        /// What is out of bounds.
        error: crate::qos::NicQosError,
    },
    /// A sub-interface NIC is not valid.
    #[error("nic {index}: vlan: {error}")]
    NicVlan {
        /// The NIC's index in the spec.
        index: usize,
        /// What is wrong.
        error: NicVlanError,
    },
    /// The HA policy is not valid (its start-after is not a name).
    #[error(transparent)]
    Ha(crate::ha::HaError),
}

impl VmSpec {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        crate::validate_name(&self.name).map_err(SpecError::Name)?;
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(SpecError::Vcpus(self.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(SpecError::Memory(self.memory_mib));
        }
        match &self.boot {
            BootSource::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                crate::validate_file_name(kernel).map_err(SpecError::Kernel)?;
                if let Some(initrd) = initrd {
                    crate::validate_file_name(initrd).map_err(SpecError::Initrd)?;
                }
                if cmdline.len() > MAX_CMDLINE || cmdline.chars().any(|c| c.is_control()) {
                    return Err(SpecError::Cmdline);
                }
            }
            BootSource::Disk => {
                if self.disks.is_empty() {
                    return Err(SpecError::NoBootDisk);
                }
            }
        }
        if self.disks.len() > MAX_DISKS {
            return Err(SpecError::TooManyDisks(self.disks.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.disks {
            crate::validate_name(&d.name).map_err(|error| SpecError::DiskName {
                disk: d.name.clone(),
                error,
            })?;
            if !seen.insert(d.name.as_str()) {
                return Err(SpecError::DuplicateDisk(d.name.clone()));
            }
            if let Some(image) = &d.image {
                crate::validate_file_name(image).map_err(|error| SpecError::DiskImage {
                    disk: d.name.clone(),
                    error,
                })?;
            }
            match d.size_gib {
                Some(0) => return Err(SpecError::DiskSizeZero(d.name.clone())),
                Some(s) if s > MAX_DISK_GIB => return Err(SpecError::DiskTooLarge(d.name.clone())),
                None if d.image.is_none() => {
                    return Err(SpecError::DiskWithoutSize(d.name.clone()))
                }
                _ => {}
            }
        }
        if self.nics.len() > MAX_NICS {
            return Err(SpecError::TooManyNics(self.nics.len()));
        }
        for (index, n) in self.nics.iter().enumerate() {
            crate::validate_name(&n.network)
                .map_err(|error| SpecError::NicNetwork { index, error })?;
            if let Some(mac) = &n.mac {
                crate::network::parse_mac(mac)
                    .map_err(|error| SpecError::NicMac { index, error })?;
            }
            if let Some(ip) = &n.ip {
                if ip.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(SpecError::NicIp {
                        index,
                        ip: ip.clone(),
                    });
                }
            }
            if n.allowed_addresses.len() > MAX_ALLOWED_ADDRESSES {
                return Err(SpecError::TooManyAllowedAddresses(index));
            }
            if !n.port_security() && !n.allowed_addresses.is_empty() {
                return Err(SpecError::AllowedAddressesWithoutPortSecurity(index));
            }
            n.validate_security_groups(index)?;
            if let Some(q) = &n.qos {
                q.validate()
                    .map_err(|error| SpecError::NicQos { index, error })?;
            }
            if let Some(v) = &n.vlan {
                self.validate_sub_interface(index, n, v)
                    .map_err(|error| SpecError::NicVlan { index, error })?;
            }
            for a in &n.allowed_addresses {
                if a.prefix().is_none() {
                    return Err(SpecError::NicAllowedIp {
                        index,
                        ip: a.ip.clone(),
                    });
                }
                if let Some(mac) = &a.mac {
                    crate::network::parse_mac(mac)
                        .map_err(|error| SpecError::NicAllowedMac { index, error })?;
                }
            }
        }
        self.ha.validate().map_err(SpecError::Ha)
    }
}

impl VmSpec {
    /// Checks sub-interface NIC `index` (`n`, riding `v`).
    fn validate_sub_interface(
        &self,
        index: usize,
        n: &NicSpec,
        v: &NicVlan,
    ) -> Result<(), NicVlanError> {
        let parent = match self.nics.get(v.parent) {
            Some(p) if v.parent < index => p,
            _ => return Err(NicVlanError::Parent(v.parent)),
        };
        if parent.vlan.is_some() {
            return Err(NicVlanError::Nested(v.parent));
        }
        if !(1..=4094).contains(&v.vid) {
            return Err(NicVlanError::Vid(v.vid));
        }
        let siblings = self.nics[..index]
            .iter()
            .filter(|o| o.vlan.is_some_and(|o| o.parent == v.parent));
        for o in siblings.clone() {
            if o.vlan.is_some_and(|o| o.vid == v.vid) {
                return Err(NicVlanError::Duplicate {
                    parent: v.parent,
                    vid: v.vid,
                });
            }
        }
        if parent.network == n.network || siblings.clone().any(|o| o.network == n.network) {
            return Err(NicVlanError::Network(n.network.clone(), v.parent));
        }
        if let (Some(mine), Some(theirs)) = (&n.mac, &parent.mac) {
            let same =
                crate::network::parse_mac(mine).ok() == crate::network::parse_mac(theirs).ok();
            if !same {
                return Err(NicVlanError::Mac(theirs.clone()));
            }
        }
        if n.qos.is_some() {
            return Err(NicVlanError::Qos);
        }
        Ok(())
    }
}

/// A VM's power state as observed on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// QEMU runs and the guest executes.
    Running,
    /// QEMU runs, guest paused (also the source after a completed migration).
    Paused,
    /// No QEMU process (disks kept).
    Stopped,
    /// QEMU waits for an incoming migration.
    Incoming,
    /// QEMU is sending its state to another host.
    Migrating,
    /// The QEMU process died without being asked to.
    Crashed,
    /// The host that runs it is not connected: the last known state is not current.
    Unknown,
}

impl PowerState {
    /// Its name in the API (`running`, `stopped`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Paused => "paused",
            PowerState::Stopped => "stopped",
            PowerState::Incoming => "incoming",
            PowerState::Migrating => "migrating",
            PowerState::Crashed => "crashed",
            PowerState::Unknown => "unknown",
        }
    }
}

/// Resource usage of one VM, measured on its host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmUsage {
    /// Total CPU time used by the QEMU process, milliseconds.
    pub cpu_time_ms: u64,
    /// CPU use since the host's previous report (a few report intervals when nothing else
    /// changed), in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Resident memory of the QEMU process, MiB.
    pub rss_mib: u64,
}

/// What a host reports about one of its VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmObserved {
    /// The VM's id.
    pub id: Uuid,
    /// The VM's name.
    pub name: String,
    /// Its power state.
    pub state: PowerState,
    /// QEMU's process id, when it runs.
    pub pid: Option<u32>,
    /// Seconds since the guest was started (kept across live migration).
    pub uptime_s: u64,
    /// What it uses now.
    pub usage: VmUsage,
    /// Its QEMU did not answer the host's last observation in time (stopped, wedged, or
    /// overloaded): `state`, `uptime_s` and `usage` are the last known ones. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unresponsive: bool,
    /// The host counts it as an HA VM: its guard's isolation response acts on it (the HA
    /// policy as the host last took it). Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ha: bool,
    /// Its NICs' traffic as its host's switch counted it (absent without a switch, or when the
    /// switch did not answer for this report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<VmNetBytes>,
}

/// A VM's traffic through its NICs' switch ports, seen from the VM, summed over its NICs:
/// counted since the ports were added on its host (a migration or a switch restart starts again
/// from 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmNetBytes {
    /// Bytes the VM received.
    pub rx_bytes: u64,
    /// Bytes the VM sent.
    pub tx_bytes: u64,
}

/// Default graceful stop timeout, seconds: a guest that has not powered off after its ACPI
/// power button by then is forced off.
pub const STOP_TIMEOUT_DEFAULT_S: u64 = 30;

/// The CPU model of a VM that runs with its host's own CPU (`-cpu host`): under KVM, without a
/// cluster CPU baseline.
pub const HOST_CPU_MODEL: &str = "host";

/// The CPU model QEMU gives a q35 guest under TCG when none is named.
pub const TCG_CPU_MODEL: &str = "qemu64";

/// The virtual hardware a VM was created with: it stays the same wherever the VM runs, so a
/// migration, an HA restart or a balancer move goes only to hosts that run it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct VmPlatform {
    /// QEMU CPU model (`-cpu`): the cluster's CPU baseline when the VM was created, else
    /// `host` under KVM (the CPU of the host it runs on: it starts on any KVM host, and moves
    /// live only to hosts whose CPU has the same name) or `qemu64` under TCG.
    pub cpu_model: String,
    /// Versioned machine type (`-machine`), e.g. `pc-q35-7.2`: the newest every host offered
    /// when it was created.
    pub machine_type: String,
}

/// A VM as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmSummary {
    /// The VM's id (cluster-unique, never reused).
    pub id: Uuid,
    /// The VM's name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Host the VM is placed on.
    pub host: String,
    /// What the operator asked for: `running` or `stopped`.
    pub desired: PowerState,
    /// What the host last reported.
    pub state: PowerState,
    /// Seconds since the guest was started (kept across live migration).
    pub uptime_s: u64,
    /// What it uses now (as last reported).
    pub usage: VmUsage,
    /// Its QEMU did not answer its host in time (stopped, wedged, or overloaded): `state` is the
    /// last known one.
    #[serde(default)]
    pub unresponsive: bool,
    /// The VM's specification.
    pub spec: VmSpec,
    /// Seconds since the Unix epoch when the VM was created.
    pub created_at: u64,
    /// Its CPU model and machine type, kept wherever it runs; `null` for a VM created on a
    /// host that did not say what it runs (it is not checked).
    #[serde(default)]
    pub platform: Option<VmPlatform>,
}

#[cfg(test)]
mod tests;
