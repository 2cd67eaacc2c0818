//! Plain placement, without rules: picks a host for a VM from capacity, allocation ratios and
//! host fit ([`crate::fit`]).
//!
//! - [`place`]: a linear scan over a slice of hosts, for one decision.
//! - [`Cluster`]: the same decision from an index of hosts by free capacity, for placing many
//!   VMs at scale; it keeps the allocation up to date as VMs are placed
//!   ([`Cluster::place_and_commit`]) and removed ([`Cluster::release`]). It knows each host's
//!   capabilities ([`Cluster::with_caps`]) and keeps one index per set of capabilities, so a VM
//!   that needs a trunk or a large underlay MTU is placed in O(log n) too.
//!
//! Among the hosts that fit, placement spreads: the most free memory after placement, then the
//! most free vCPUs, then the smallest name.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, HashMap};

use crate::fit::{self, HostCaps, HostView, Shortfall, Unfit, VmNeeds, BASIC_HOST, NO_NEEDS};
use crate::host::{Eligibility, HostInput, Placement, VmRequest};

/// Why a VM could not be placed (or a [`Cluster`] not built or updated).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// The named host is not known.
    #[error("host {host} is not registered")]
    UnknownHost {
        /// The name asked for.
        host: String,
    },
    /// The named host may not receive VMs now.
    #[error("host {host} cannot take VMs: {why}")]
    HostUnavailable {
        /// The host.
        host: String,
        /// Disconnected or in maintenance.
        why: Eligibility,
    },
    /// No host is connected and out of maintenance.
    #[error("no host can take VMs: none is connected and out of maintenance")]
    NoEligibleHost,
    /// The named host is too full for the VM.
    #[error("host {host} cannot take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): {details}")]
    InsufficientCapacity {
        /// The host.
        host: String,
        /// The VM.
        vm: String,
        /// Its vCPUs.
        vcpus: u32,
        /// Its memory, MiB.
        memory_mib: u64,
        /// What is missing.
        details: Box<Shortfall>,
    },
    /// The named host lacks a capability the VM needs.
    #[error("host {host} cannot take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): {reason}")]
    Unfit {
        /// The host.
        host: String,
        /// The VM.
        vm: String,
        /// Its vCPUs.
        vcpus: u32,
        /// Its memory, MiB.
        memory_mib: u64,
        /// Why.
        reason: Unfit,
    },
    /// No eligible host is large enough for the VM; names the closest one.
    #[error(
        "no host can take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): none of {eligible} eligible hosts fits; closest is host {best_host}: {details}"
    )]
    NoCapacity {
        /// The VM.
        vm: String,
        /// Its vCPUs.
        vcpus: u32,
        /// Its memory, MiB.
        memory_mib: u64,
        /// Number of eligible hosts considered.
        eligible: usize,
        /// The host closest to fitting (smallest memory, then vCPU shortfall, then name).
        best_host: String,
        /// What it lacks.
        details: Box<Shortfall>,
    },
    /// The request asks for no vCPU or no memory.
    #[error("VM '{vm}' must ask for at least 1 vCPU and 1 MiB of memory (asked {vcpus} vCPU, {memory_mib} MiB)")]
    EmptyRequest {
        /// The VM.
        vm: String,
        /// vCPUs asked.
        vcpus: u32,
        /// Memory asked, MiB.
        memory_mib: u64,
    },
    /// Two hosts carry the same name.
    #[error("host {host} is listed twice")]
    DuplicateHost {
        /// The name.
        host: String,
    },
    /// A release asks to free more than the host has allocated.
    #[error("host {host} has {allocated_vcpus} vCPU and {allocated_memory_mib} MiB allocated, cannot release {vcpus} vCPU and {memory_mib} MiB")]
    ReleaseTooLarge {
        /// The host.
        host: String,
        /// vCPUs allocated there.
        allocated_vcpus: u32,
        /// Memory allocated there, MiB.
        allocated_memory_mib: u64,
        /// vCPUs to release.
        vcpus: u32,
        /// Memory to release, MiB.
        memory_mib: u64,
    },
}

/// Refuses a request for no vCPU or no memory.
pub(crate) fn check_request(req: &VmRequest) -> Result<(), PlacementError> {
    if req.vcpus == 0 || req.memory_mib == 0 {
        return Err(PlacementError::EmptyRequest {
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
        });
    }
    Ok(())
}

/// The placement of `req` on `h`.
pub(crate) fn placement(h: &HostInput, req: &VmRequest) -> Placement {
    Placement {
        host: h.name.clone(),
        allocated_vcpus: h.allocated_vcpus.saturating_add(req.vcpus),
        allocated_memory_mib: h.allocated_memory_mib.saturating_add(req.memory_mib),
        allocatable_vcpus: h.allocatable_vcpus(),
        allocatable_memory_mib: h.allocatable_memory_mib(),
    }
}

/// The error for a named host that cannot take `req`.
fn refusal(h: &HostInput, req: &VmRequest, unfit: Unfit) -> PlacementError {
    match unfit {
        Unfit::Disconnected => PlacementError::HostUnavailable {
            host: h.name.clone(),
            why: Eligibility::Disconnected,
        },
        Unfit::Maintenance => PlacementError::HostUnavailable {
            host: h.name.clone(),
            why: Eligibility::Maintenance,
        },
        Unfit::Capacity(details) => PlacementError::InsufficientCapacity {
            host: h.name.clone(),
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            details,
        },
        reason => PlacementError::Unfit {
            host: h.name.clone(),
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            reason,
        },
    }
}

fn place_on(
    h: &HostInput,
    caps: &HostCaps,
    req: &VmRequest,
    needs: &VmNeeds,
) -> Result<Placement, PlacementError> {
    match fit::check(h, caps, req, needs) {
        Ok(()) => Ok(placement(h, req)),
        Err(unfit) => Err(refusal(h, req, unfit)),
    }
}

/// Spreading order: `Greater` means `a` is the better choice.
fn better(a: (&HostInput, &HostCaps), b: (&HostInput, &HostCaps)) -> Ordering {
    HostView::of(a.0, a.1)
        .free()
        .cmp(&HostView::of(b.0, b.1).free())
        .then(b.0.name.cmp(&a.0.name))
}

/// The refusal when no eligible host fits: names the host closest to fitting (smallest memory
/// shortfall, then vCPU shortfall, then name).
fn no_capacity<'a>(
    hosts: impl Iterator<Item = (&'a HostInput, &'a HostCaps)>,
    req: &VmRequest,
) -> PlacementError {
    let mut count = 0;
    let mut best: Option<((u64, u64), &HostInput, Shortfall)> = None;
    for (h, caps) in hosts.filter(|(h, _)| h.eligible == Eligibility::Ok) {
        count += 1;
        let Some(s) = HostView::of(h, caps).shortfall(req.vcpus, req.memory_mib) else {
            continue;
        };
        let d = s.distance();
        if best
            .as_ref()
            .is_none_or(|(bd, bh, _)| (d, &h.name) < (*bd, &bh.name))
        {
            best = Some((d, h, s));
        }
    }
    match best {
        None => PlacementError::NoEligibleHost,
        Some((_, b, details)) => PlacementError::NoCapacity {
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            eligible: count,
            best_host: b.name.clone(),
            details: Box::new(details),
        },
    }
}

/// Picks a host for `req`: `pinned` if given (or an error saying why not), else the eligible host
/// that fits with the most free memory after placement (ties: most free vCPUs, then name). Hosts
/// and VM are taken without capabilities or needs (see [`Cluster::with_caps`] for those).
pub fn place(
    hosts: &[HostInput],
    req: &VmRequest,
    pinned: Option<&str>,
) -> Result<Placement, PlacementError> {
    check_request(req)?;
    if let Some(name) = pinned {
        let h =
            hosts
                .iter()
                .find(|h| h.name == name)
                .ok_or_else(|| PlacementError::UnknownHost {
                    host: name.to_owned(),
                })?;
        return place_on(h, &BASIC_HOST, req, &NO_NEEDS);
    }
    let basic = || hosts.iter().map(|h| (h, &BASIC_HOST));
    match basic()
        .filter(|(h, caps)| fit::check(h, caps, req, &NO_NEEDS).is_ok())
        .max_by(|a, b| better(*a, *b))
    {
        Some((h, _)) => Ok(placement(h, req)),
        None => Err(no_capacity(basic(), req)),
    }
}

/// Index key of an eligible host: free memory, free vCPUs (after the reserve), then
/// `Reverse(i)`: hosts are stored in name order, so the smaller index wins a tie. The largest
/// key is the spreading choice.
type Key = (u64, u64, Reverse<usize>);

/// The eligible hosts sharing one set of capabilities (reserve aside), by free capacity.
#[derive(Debug, Clone)]
struct CapsClass {
    caps: HostCaps,
    index: BTreeSet<Key>,
}

/// The best key of `index` with room for `req`, `exclude` aside. One step per distinct
/// free-memory level whose best host lacks vCPUs (all others at that level lack them too).
fn best_in(index: &BTreeSet<Key>, req: &VmRequest, exclude: Option<usize>) -> Option<Key> {
    let mut upper: Option<Key> = None;
    loop {
        let key = match upper {
            None => index.iter().next_back(),
            Some(u) => index.range(..u).next_back(),
        }
        .copied()?;
        let (mem, cpu, Reverse(i)) = key;
        if mem < req.memory_mib {
            return None;
        }
        if cpu >= u64::from(req.vcpus) {
            if Some(i) != exclude {
                return Some(key);
            }
            upper = Some(key);
        } else {
            upper = Some((mem, 0, Reverse(usize::MAX)));
        }
    }
}

/// Hosts and their allocations, indexed by free capacity (one index per set of capabilities),
/// so that one placement costs O(log n) when memory is the limit.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Sorted by name.
    hosts: Vec<HostInput>,
    caps: Vec<HostCaps>,
    by_name: HashMap<String, usize>,
    classes: Vec<CapsClass>,
    class_of: Vec<usize>,
}

impl Cluster {
    /// Indexes `hosts`, each with [`BASIC_HOST`]'s capabilities; names must be unique.
    pub fn new(hosts: Vec<HostInput>) -> Result<Self, PlacementError> {
        Cluster::with_caps(hosts.into_iter().map(|h| (h, BASIC_HOST.clone())).collect())
    }

    /// Indexes `hosts` with their capabilities; names must be unique.
    pub fn with_caps(mut hosts: Vec<(HostInput, HostCaps)>) -> Result<Self, PlacementError> {
        hosts.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        if let Some(w) = hosts.windows(2).find(|w| w[0].0.name == w[1].0.name) {
            return Err(PlacementError::DuplicateHost {
                host: w[0].0.name.clone(),
            });
        }
        let (hosts, caps): (Vec<HostInput>, Vec<HostCaps>) = hosts.into_iter().unzip();
        let by_name = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        let mut cluster = Cluster {
            class_of: vec![0; hosts.len()],
            hosts,
            caps: Vec::new(),
            by_name,
            classes: Vec::new(),
        };
        for (i, c) in caps.iter().enumerate() {
            cluster.class_of[i] = cluster.class_for(c);
        }
        cluster.caps = caps;
        for i in 0..cluster.hosts.len() {
            cluster.index_insert(i);
        }
        Ok(cluster)
    }

    fn class_for(&mut self, caps: &HostCaps) -> usize {
        let class = caps.class();
        match self.classes.iter().position(|c| c.caps == class) {
            Some(k) => k,
            None => {
                self.classes.push(CapsClass {
                    caps: class,
                    index: BTreeSet::new(),
                });
                self.classes.len() - 1
            }
        }
    }

    /// The hosts, in name order, with their current allocation.
    pub fn hosts(&self) -> &[HostInput] {
        &self.hosts
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Option<&HostInput> {
        self.by_name.get(name).map(|&i| &self.hosts[i])
    }

    /// What the fit check reads about host `i`.
    pub(crate) fn view(&self, i: usize) -> HostView<'_> {
        HostView::of(&self.hosts[i], &self.caps[i])
    }

    fn key(&self, i: usize) -> Key {
        let (mem, cpu) = self.view(i).free();
        (mem, cpu, Reverse(i))
    }

    fn index_insert(&mut self, i: usize) {
        if self.hosts[i].eligible == Eligibility::Ok {
            let key = self.key(i);
            self.classes[self.class_of[i]].index.insert(key);
        }
    }

    fn index_remove(&mut self, i: usize) {
        let key = self.key(i);
        self.classes[self.class_of[i]].index.remove(&key);
    }

    /// The index of host `name`.
    pub(crate) fn lookup(&self, name: &str) -> Result<usize, PlacementError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| PlacementError::UnknownHost {
                host: name.to_owned(),
            })
    }

    /// Indexes of the eligible hosts whose capabilities meet `needs`, best spreading choice
    /// first (most free memory, then most free vCPUs, then name).
    pub(crate) fn spread_order<'a>(&'a self, needs: &VmNeeds) -> impl Iterator<Item = usize> + 'a {
        let mut heads: Vec<_> = self
            .classes
            .iter()
            .filter(|c| needs.met_by(&c.caps))
            .map(|c| c.index.iter().rev().peekable())
            .collect();
        std::iter::from_fn(move || {
            let best = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(k, it)| it.peek().map(|key| (**key, k)))
                .max()?;
            heads[best.1].next();
            let (_, _, Reverse(i)) = best.0;
            Some(i)
        })
    }

    /// The index of the host [`place`] would pick among those whose capabilities meet `needs`,
    /// `exclude` aside, if any fits.
    pub(crate) fn choose(
        &self,
        req: &VmRequest,
        needs: &VmNeeds,
        exclude: Option<usize>,
    ) -> Option<usize> {
        self.classes
            .iter()
            .filter(|c| needs.met_by(&c.caps))
            .filter_map(|c| best_in(&c.index, req, exclude))
            .max()
            .map(|(_, _, Reverse(i))| i)
    }

    /// Adds `vcpus` and `memory_mib` to host `i`'s allocation.
    pub(crate) fn commit(&mut self, i: usize, vcpus: u32, memory_mib: u64) {
        self.index_remove(i);
        let h = &mut self.hosts[i];
        h.allocated_vcpus = h.allocated_vcpus.saturating_add(vcpus);
        h.allocated_memory_mib = h.allocated_memory_mib.saturating_add(memory_mib);
        self.index_insert(i);
    }

    /// Picks a host like [`place`] (same answer on the same hosts, reserves aside) and adds the
    /// VM to its allocation. The VM is taken to need no capability.
    pub fn place_and_commit(
        &mut self,
        req: &VmRequest,
        pinned: Option<&str>,
    ) -> Result<Placement, PlacementError> {
        check_request(req)?;
        let i = match pinned {
            Some(name) => {
                let i = self.lookup(name)?;
                place_on(&self.hosts[i], &self.caps[i], req, &NO_NEEDS)?;
                i
            }
            None => match self.choose(req, &NO_NEEDS, None) {
                Some(i) => i,
                None => return Err(no_capacity(self.hosts.iter().zip(&self.caps), req)),
            },
        };
        let placed = placement(&self.hosts[i], req);
        self.commit(i, req.vcpus, req.memory_mib);
        Ok(placed)
    }

    /// Removes a VM's share from `host`'s allocation (the VM stopped, was deleted or moved).
    pub fn release(
        &mut self,
        host: &str,
        vcpus: u32,
        memory_mib: u64,
    ) -> Result<(), PlacementError> {
        let i = self.lookup(host)?;
        let h = &self.hosts[i];
        let (Some(new_cpu), Some(new_mem)) = (
            h.allocated_vcpus.checked_sub(vcpus),
            h.allocated_memory_mib.checked_sub(memory_mib),
        ) else {
            return Err(PlacementError::ReleaseTooLarge {
                host: host.to_owned(),
                allocated_vcpus: h.allocated_vcpus,
                allocated_memory_mib: h.allocated_memory_mib,
                vcpus,
                memory_mib,
            });
        };
        self.index_remove(i);
        let h = &mut self.hosts[i];
        h.allocated_vcpus = new_cpu;
        h.allocated_memory_mib = new_mem;
        self.index_insert(i);
        Ok(())
    }

    /// Changes whether `host` may receive VMs (connection or maintenance changed).
    pub fn set_eligibility(
        &mut self,
        host: &str,
        eligible: Eligibility,
    ) -> Result<(), PlacementError> {
        let i = self.lookup(host)?;
        self.index_remove(i);
        self.hosts[i].eligible = eligible;
        self.index_insert(i);
        Ok(())
    }

    /// Changes `host`'s capabilities (its agent reported a trunk or an MTU, a reserve changed).
    pub fn set_caps(&mut self, host: &str, caps: HostCaps) -> Result<(), PlacementError> {
        let i = self.lookup(host)?;
        self.index_remove(i);
        self.class_of[i] = self.class_for(&caps);
        self.caps[i] = caps;
        self.index_insert(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
