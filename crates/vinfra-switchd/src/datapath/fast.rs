//! The datapath's part of the kernel fast path (`crate::fastpath`): which ports it takes, and
//! when it catches up with the core.

use super::Datapath;
use crate::fastpath::KernelFastPath;

impl Datapath {
    /// Starts the kernel fast path; without it (no eBPF object, no BPF here) the daemon
    /// forwards everything itself, and says why.
    pub(crate) fn enable_fast_path(&mut self) {
        self.fast = KernelFastPath::start();
    }

    /// Puts the fast path on port `id` when it can take it (a VM tap, an interface port or
    /// the VXLAN uplink, without QoS), or takes it off.
    pub(super) fn update_fast_port(&mut self, id: u32) {
        if let Some(fast) = self.fast.as_mut() {
            let now = self.start.elapsed();
            let port = self.ports.get(&id).filter(|p| p.qos.is_none());
            if let Some(local_ip) = port.and_then(|p| p.io.fast_uplink()) {
                fast.set_uplink(&mut self.switch, now, id, Some(local_ip));
                return;
            }
            let device = port.and_then(|p| p.io.fast_device());
            fast.set_port(&mut self.switch, now, id, device);
        }
    }

    /// Takes every flow back from the kernel if the core's state moved.
    pub(super) fn catch_up_fast(&mut self) {
        if let Some(fast) = self.fast.as_mut() {
            fast.catch_up(&mut self.switch, self.start.elapsed());
        }
    }

    /// The fast path's counters to the core now.
    pub(super) fn sync_fast(&mut self) {
        if let Some(fast) = self.fast.as_mut() {
            fast.sync(&mut self.switch, self.start.elapsed());
        }
    }
}
