//! How loaded a host is, and how unevenly load is spread.
//!
//! A host's **load** is its measured demand over its physical capacity, CPU and memory each
//! normalized, combined by taking the larger of the two:
//! `max(cpu demand / cores, memory demand / memory)`. The maximum (rather than an average) is
//! used because the scarcer resource is the one that hurts: a host at 95 % memory and 10 % CPU
//! is a hot spot, and averaging would call it half loaded. Load is demand, not allocation:
//! allocation (with over-allocation ratios) is a hard capacity limit, checked separately.
//!
//! The cluster's **imbalance** is the population standard deviation of the loads of the hosts
//! that are connected and not in maintenance. It is 0 when every host carries the same share and
//! does not depend on the cluster's size or average load. Balancing scores a move by the sum of
//! squared deviations from the mean it removes (`hosts × Δvariance`, O(1) from running sums).
//! When the move leaves the total load unchanged (same bottleneck resource and capacity on both
//! hosts), moving load `d` from a host at `a` to one at `b` removes `2·d·(a − b − d)`: a quantity
//! local to the two hosts, so a gain means the same on 10 or 10,000 hosts.

/// `max(cpu_demand / cores, memory_demand / memory)`; 0 for a host without capacity.
pub fn host_load(cpu_demand: f64, memory_demand_mib: f64, cores: f64, memory_mib: f64) -> f64 {
    let cpu = if cores > 0.0 { cpu_demand / cores } else { 0.0 };
    let mem = if memory_mib > 0.0 {
        memory_demand_mib / memory_mib
    } else {
        0.0
    };
    cpu.max(mem).max(0.0)
}

/// Population standard deviation; 0 for no values.
pub fn std_dev(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = values
        .clone()
        .fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if n == 0 {
        return 0.0;
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    var.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_takes_the_scarcer_resource() {
        assert_eq!(host_load(2.0, 900.0, 10.0, 1000.0), 0.9);
        assert_eq!(host_load(5.0, 100.0, 10.0, 1000.0), 0.5);
        assert_eq!(host_load(5.0, 100.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn std_dev_of_loads() {
        assert_eq!(std_dev([0.5, 0.5, 0.5].into_iter()), 0.0);
        assert!((std_dev([0.0, 1.0].into_iter()) - 0.5).abs() < 1e-12);
        assert_eq!(std_dev([].into_iter()), 0.0);
    }
}
