//! The test guest as a lab creates it: its VM requests, its static addresses, its boot.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vinfra_types::api::CreateVmRequest;
use vinfra_types::network::Ipv4Subnet;
use vinfra_types::{BootSource, NicSpec, VmSpec, VmSummary};

use crate::error::*;
use crate::guest::{self, GuestAddress};
use crate::Lab;

impl Lab {
    /// A request for a small VM booting the lab's guest image (1 vCPU, `memory_mib`,
    /// `console=ttyS0 no_timer_check`), started at once. `no_timer_check`: under TCG on a
    /// loaded machine the kernel's IO-APIC timer check can miss its ticks and panic ("IO-APIC +
    /// timer doesn't work!"), as virtual machines' kernels are told to skip it.
    pub fn guest_vm_request(name: &str, memory_mib: u64, host: Option<&str>) -> CreateVmRequest {
        CreateVmRequest {
            spec: VmSpec {
                name: name.to_string(),
                vcpus: 1,
                memory_mib,
                boot: BootSource::Kernel {
                    kernel: guest::KERNEL_IMAGE.into(),
                    initrd: Some(guest::INITRD_IMAGE.into()),
                    cmdline: "console=ttyS0 no_timer_check".into(),
                },
                disks: Vec::new(),
                nics: Vec::new(),
                ha: Default::default(),
            },
            host: host.map(str::to_string),
            start: true,
            count: None,
        }
    }

    /// A request for a VM as [`Lab::guest_vm_request`] makes it, with one NIC on `network`
    /// that the guest configures as `address` says: the address goes both into the NIC (so the
    /// console's IPAM and the switch know it) and onto the kernel command line (so the guest's
    /// init sets it), or the guest asks its host's switch by DHCP.
    pub fn guest_nic_vm_request(
        name: &str,
        memory_mib: u64,
        host: Option<&str>,
        network: &str,
        address: GuestAddress,
    ) -> CreateVmRequest {
        let mut req = Self::guest_vm_request(name, memory_mib, host);
        if let BootSource::Kernel { cmdline, .. } = &mut req.spec.boot {
            cmdline.push(' ');
            cmdline.push_str(&address.kernel_arg());
        }
        req.spec.nics = vec![NicSpec {
            network: network.to_string(),
            mac: None,
            ip: address.requested_ip().map(|ip| ip.to_string()),
            ..Default::default()
        }];
        req
    }

    /// The static address `ip` on `network`, with the prefix length of the network's subnet and
    /// its gateway as the console has them.
    pub fn static_address(&self, network: &str, ip: Ipv4Addr) -> Result<GuestAddress, LabError> {
        let net = self.api()?.network(network)?.network;
        let subnet = Ipv4Subnet::parse(&net.subnet).map_err(|source| LabError::Subnet {
            network: net.name,
            source,
        })?;
        let gateway = net.gateway.as_deref().and_then(|g| g.parse().ok());
        Ok(GuestAddress::Static {
            ip,
            prefix: subnet.prefix(),
            gateway,
        })
    }

    /// Creates (and starts) a VM booting the guest image.
    pub fn create_guest_vm(
        &self,
        name: &str,
        memory_mib: u64,
        host: Option<&str>,
    ) -> Result<VmSummary, LabError> {
        let req = Self::guest_vm_request(name, memory_mib, host);
        Ok(self.api()?.create_vm(&req)?)
    }

    /// Waits until the serial console of `vm` contains `needle`; returns the console text.
    pub fn wait_console(
        &self,
        vm: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let client = self.api()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(log) = client.console_log(vm, Some(65536)) {
                if log.text.contains(needle) {
                    return Ok(log.text);
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("'{needle}' on the console of VM {vm}"),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
