//! Plain placement: picks a host for a VM from capacity and allocation ratios.
//!
//! - [`place`]: a linear scan over a slice of hosts, for one decision.
//! - [`Cluster`]: the same decision from an ordered index, for placing many VMs at scale;
//!   it keeps the allocation up to date as VMs are placed ([`Cluster::place_and_commit`]) and
//!   removed ([`Cluster::release`]).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, HashMap};

use crate::host::{Eligibility, HostInput, Placement, Request};

/// Why a VM could not be placed (or a [`Cluster`] not built or updated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The named host is not known.
    #[error("host {host} is not registered")]
    UnknownHost { host: String },
    /// The named host may not receive VMs now.
    #[error("host {host} cannot take VMs: {why}")]
    HostUnavailable { host: String, why: Eligibility },
    /// No host is connected and out of maintenance.
    #[error("no host can take VMs: none is connected and out of maintenance")]
    NoEligibleHost,
    /// The named host is too full for the VM.
    #[error("host {host} cannot take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): {details}")]
    InsufficientCapacity {
        host: String,
        vm: String,
        vcpus: u32,
        memory_mib: u64,
        details: String,
    },
    /// No eligible host is large enough for the VM; names the closest one.
    #[error(
        "no host can take VM '{vm}' ({vcpus} vCPU, {memory_mib} MiB): none of {eligible} eligible hosts fits; closest is host {best_host}: {details}"
    )]
    NoCapacity {
        vm: String,
        vcpus: u32,
        memory_mib: u64,
        /// Number of eligible hosts considered.
        eligible: usize,
        best_host: String,
        details: String,
    },
    /// The request asks for no vCPU or no memory.
    #[error("VM '{vm}' must ask for at least 1 vCPU and 1 MiB of memory (asked {vcpus} vCPU, {memory_mib} MiB)")]
    EmptyRequest {
        vm: String,
        vcpus: u32,
        memory_mib: u64,
    },
    /// Two hosts carry the same name.
    #[error("host {host} is listed twice")]
    DuplicateHost { host: String },
    /// A release asks to free more than the host has allocated.
    #[error("host {host} has {allocated_vcpus} vCPU and {allocated_memory_mib} MiB allocated, cannot release {vcpus} vCPU and {memory_mib} MiB")]
    ReleaseTooLarge {
        host: String,
        allocated_vcpus: u32,
        allocated_memory_mib: u64,
        vcpus: u32,
        memory_mib: u64,
    },
}

fn check_request(req: &Request) -> Result<(), PlacementError> {
    if req.vcpus == 0 || req.memory_mib == 0 {
        return Err(PlacementError::EmptyRequest {
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
        });
    }
    Ok(())
}

fn placement(h: &HostInput, req: &Request) -> Placement {
    Placement {
        host: h.name.clone(),
        allocated_vcpus: h.allocated_vcpus.saturating_add(req.vcpus),
        allocated_memory_mib: h.allocated_memory_mib.saturating_add(req.memory_mib),
        allocatable_vcpus: h.allocatable_vcpus(),
        allocatable_memory_mib: h.allocatable_memory_mib(),
    }
}

fn insufficient(h: &HostInput, req: &Request, details: String) -> PlacementError {
    PlacementError::InsufficientCapacity {
        host: h.name.clone(),
        vm: req.vm.clone(),
        vcpus: req.vcpus,
        memory_mib: req.memory_mib,
        details,
    }
}

fn place_on(h: &HostInput, req: &Request) -> Result<Placement, PlacementError> {
    if h.eligible != Eligibility::Ok {
        return Err(PlacementError::HostUnavailable {
            host: h.name.clone(),
            why: h.eligible,
        });
    }
    match h.shortfall(req) {
        None => Ok(placement(h, req)),
        Some(details) => Err(insufficient(h, req, details)),
    }
}

/// Spreading order: `Greater` means `a` is the better choice.
fn better(a: &HostInput, b: &HostInput) -> Ordering {
    a.free_memory_mib()
        .cmp(&b.free_memory_mib())
        .then(a.free_vcpus().cmp(&b.free_vcpus()))
        .then(b.name.cmp(&a.name))
}

/// The refusal when no eligible host fits: names the host closest to fitting (smallest memory
/// shortfall, then vCPU shortfall, then name).
fn no_capacity<'a>(eligible: impl Iterator<Item = &'a HostInput>, req: &Request) -> PlacementError {
    let mut count = 0;
    let mut best: Option<&HostInput> = None;
    for h in eligible {
        count += 1;
        let closer = match best {
            None => true,
            Some(b) => (h.deficit(req), &h.name) < (b.deficit(req), &b.name),
        };
        if closer {
            best = Some(h);
        }
    }
    match best {
        None => PlacementError::NoEligibleHost,
        Some(b) => PlacementError::NoCapacity {
            vm: req.vm.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            eligible: count,
            best_host: b.name.clone(),
            details: b.shortfall(req).unwrap_or_default(),
        },
    }
}

/// Picks a host for `req`: `pinned` if given (or an error saying why not), else the eligible host
/// that fits with the most free memory after placement (ties: most free vCPUs, then name).
pub fn place(
    hosts: &[HostInput],
    req: &Request,
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
        return place_on(h, req);
    }
    let eligible = || hosts.iter().filter(|h| h.eligible == Eligibility::Ok);
    match eligible()
        .filter(|h| h.fits(req))
        .max_by(|a, b| better(a, b))
    {
        Some(h) => Ok(placement(h, req)),
        None => Err(no_capacity(eligible(), req)),
    }
}

/// Index key of an eligible host: the largest key is the spreading choice.
/// `Reverse(i)`: hosts are stored in name order, so the smaller index wins a tie.
type Key = (u64, u32, Reverse<usize>);

/// Hosts and their allocations, indexed by free capacity so that one placement costs
/// O(log n) when memory is the limit (at most one index step per distinct free-memory level
/// whose hosts all lack vCPUs, otherwise).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Sorted by name.
    hosts: Vec<HostInput>,
    by_name: HashMap<String, usize>,
    /// Keys of eligible hosts.
    index: BTreeSet<Key>,
}

impl Cluster {
    /// Indexes `hosts`; names must be unique.
    pub fn new(mut hosts: Vec<HostInput>) -> Result<Self, PlacementError> {
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = hosts.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(PlacementError::DuplicateHost {
                host: w[0].name.clone(),
            });
        }
        let by_name = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        let mut cluster = Cluster {
            hosts,
            by_name,
            index: BTreeSet::new(),
        };
        for i in 0..cluster.hosts.len() {
            cluster.index_insert(i);
        }
        Ok(cluster)
    }

    /// The hosts, in name order, with their current allocation.
    pub fn hosts(&self) -> &[HostInput] {
        &self.hosts
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Option<&HostInput> {
        self.by_name.get(name).map(|&i| &self.hosts[i])
    }

    fn key(&self, i: usize) -> Key {
        let h = &self.hosts[i];
        (h.free_memory_mib(), h.free_vcpus(), Reverse(i))
    }

    fn index_insert(&mut self, i: usize) {
        if self.hosts[i].eligible == Eligibility::Ok {
            self.index.insert(self.key(i));
        }
    }

    fn index_remove(&mut self, i: usize) {
        let key = self.key(i);
        self.index.remove(&key);
    }

    fn lookup(&self, name: &str) -> Result<usize, PlacementError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| PlacementError::UnknownHost {
                host: name.to_owned(),
            })
    }

    /// Indexes (into [`Cluster::hosts`]) of the eligible hosts, best spreading choice first
    /// (most free memory, then most free vCPUs, then name).
    pub(crate) fn spread_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.index.iter().rev().map(|&(_, _, Reverse(i))| i)
    }

    /// The index of the host [`place`] would pick, if any fits.
    fn choose(&self, req: &Request) -> Option<usize> {
        let mut upper: Option<Key> = None;
        loop {
            let (mem, cpu, Reverse(i)) = match upper {
                None => self.index.iter().next_back(),
                Some(u) => self.index.range(..u).next_back(),
            }
            .copied()?;
            if mem < req.memory_mib {
                return None;
            }
            if cpu >= req.vcpus {
                return Some(i);
            }
            // The best host with this much free memory lacks vCPUs, so do all others with
            // exactly as much: go on below this memory level.
            upper = Some((mem, 0, Reverse(usize::MAX)));
        }
    }

    /// Picks a host like [`place`] (same answer on the same hosts) and adds the VM to its
    /// allocation.
    pub fn place_and_commit(
        &mut self,
        req: &Request,
        pinned: Option<&str>,
    ) -> Result<Placement, PlacementError> {
        check_request(req)?;
        let i = match pinned {
            Some(name) => {
                let i = self.lookup(name)?;
                place_on(&self.hosts[i], req)?;
                i
            }
            None => match self.choose(req) {
                Some(i) => i,
                None => {
                    let eligible = self.hosts.iter().filter(|h| h.eligible == Eligibility::Ok);
                    return Err(no_capacity(eligible, req));
                }
            },
        };
        let placed = placement(&self.hosts[i], req);
        self.index_remove(i);
        let h = &mut self.hosts[i];
        h.allocated_vcpus = placed.allocated_vcpus;
        h.allocated_memory_mib = placed.allocated_memory_mib;
        self.index_insert(i);
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
}

#[cfg(test)]
mod tests;
