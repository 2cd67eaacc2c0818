//! 10,000 hosts, 100,000 VMs: placements per second with [`Cluster`], and the linear-scan
//! [`place`] on the same hosts for the first VMs, side by side.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use vinfra_placement::{place, Cluster, Eligibility, HostInput, Placement, Request};
use vinfra_types::{AllocationRatios, HostCapacity};

const HOSTS: usize = 10_000;
const VMS: usize = 100_000;
const LINEAR_VMS: usize = 2_000;

/// A small deterministic generator (splitmix64), so every run places the same VMs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn hosts(rng: &mut Rng) -> Vec<HostInput> {
    (0..HOSTS)
        .map(|i| HostInput {
            name: format!("host-{i:05}"),
            capacity: HostCapacity {
                cores: rng.pick(&[32, 48, 64, 96]),
                memory_mib: rng.pick(&[131_072, 262_144, 393_216, 524_288]),
            },
            ratios: AllocationRatios {
                cpu: 4.0,
                memory: rng.pick(&[1.0, 1.2, 1.5]),
            },
            allocated_vcpus: 0,
            allocated_memory_mib: 0,
            eligible: match i % 50 {
                0 => Eligibility::Maintenance,
                1 => Eligibility::Disconnected,
                _ => Eligibility::Ok,
            },
        })
        .collect()
}

fn requests(rng: &mut Rng) -> Vec<Request> {
    (0..VMS)
        .map(|i| Request {
            vm: format!("vm-{i:06}"),
            vcpus: rng.pick(&[1, 2, 2, 4, 4, 8, 16]),
            memory_mib: rng.pick(&[1024, 2048, 4096, 4096, 8192, 16_384, 32_768]),
        })
        .collect()
}

fn main() {
    let mut rng = Rng(42);
    let hosts = hosts(&mut rng);
    let reqs = requests(&mut rng);

    let t = Instant::now();
    let mut cluster = match Cluster::new(hosts.clone()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let build = t.elapsed();

    let mut lat = Vec::with_capacity(VMS);
    let mut cluster_choice: Vec<Placement> = Vec::with_capacity(VMS);
    let mut refused = 0usize;
    let t = Instant::now();
    for req in &reqs {
        let s = Instant::now();
        match cluster.place_and_commit(req, None) {
            Ok(p) => cluster_choice.push(p),
            Err(_) => refused += 1,
        }
        lat.push(s.elapsed());
    }
    let total = t.elapsed();
    lat.sort_unstable();
    let rate = VMS as f64 / total.as_secs_f64();
    println!("hosts: {HOSTS} (2% in maintenance, 2% disconnected), VMs: {VMS}");
    println!("Cluster::new: {build:?}");
    println!(
        "Cluster::place_and_commit: {VMS} placements in {total:?} = {rate:.0} placements/s \
         (p50 {:?}, p99 {:?}, max {:?}); refused {refused}",
        lat[VMS / 2],
        lat[VMS * 99 / 100],
        lat[VMS - 1]
    );

    // Linear scan over the same hosts, committing each choice.
    let mut plain = hosts;
    let by_name: HashMap<String, usize> = plain
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i))
        .collect();
    let t = Instant::now();
    let mut agree = 0usize;
    for (n, req) in reqs.iter().take(LINEAR_VMS).enumerate() {
        if let Ok(p) = black_box(place(&plain, req, None)) {
            if cluster_choice.get(n).map(|c| &c.host) == Some(&p.host) {
                agree += 1;
            }
            if let Some(&i) = by_name.get(&p.host) {
                plain[i].allocated_vcpus = p.allocated_vcpus;
                plain[i].allocated_memory_mib = p.allocated_memory_mib;
            }
        }
    }
    let linear = t.elapsed();
    let linear_rate = LINEAR_VMS as f64 / linear.as_secs_f64();
    println!(
        "place (linear scan): {LINEAR_VMS} placements in {linear:?} = {linear_rate:.0} placements/s; \
         same host as Cluster for {agree}/{LINEAR_VMS}"
    );
    println!("Cluster is {:.0}x faster per placement", rate / linear_rate);
}
