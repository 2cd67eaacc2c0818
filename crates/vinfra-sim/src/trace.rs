//! Demand traces: what a VM uses at each step, CPU in cores and memory as a fraction of its
//! allocation. Random parts (jitter, random walks) come from a ChaCha8 generator seeded with the
//! scenario's seed, one stream per VM, so a VM's trace does not change when VMs are added after
//! it, and both balancers of a run see the same demand.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A demand trace.
#[derive(Debug, Clone, PartialEq)]
pub enum Demand {
    /// The same demand at every step.
    Constant {
        /// CPU demand, cores (clamped to the VM's vCPUs).
        cpu: f64,
        /// Memory demand, a fraction of the allocation.
        mem: f64,
        /// Relative noise on each step (seeded): ± this fraction of the demand; 0 for none.
        jitter: f64,
    },
    /// `(from step, cpu, mem)` points, sorted; the demand holds until the next point, the first
    /// point's demand applies before it.
    Steps {
        /// The points.
        points: Vec<(u32, f64, f64)>,
        /// Relative noise on each step (seeded): ± this fraction of the demand; 0 for none.
        jitter: f64,
    },
    /// `base + amplitude × sin(2π (step + phase) / period)`.
    Sine {
        /// Base CPU demand, cores.
        cpu: f64,
        /// Base memory demand, a fraction of the allocation.
        mem: f64,
        /// Amplitude of the CPU demand.
        cpu_amplitude: f64,
        /// Amplitude of the memory demand.
        mem_amplitude: f64,
        /// Steps per cycle.
        period: f64,
        /// Steps.
        phase: f64,
        /// Relative noise on each step (seeded): ± this fraction of the demand; 0 for none.
        jitter: f64,
    },
    /// Starts at `cpu`/`mem`, then moves by a uniform amount in `±cpu_step`/`±mem_step` each step.
    RandomWalk {
        /// CPU demand at the start, cores.
        cpu: f64,
        /// Memory demand at the start, a fraction of the allocation.
        mem: f64,
        /// Largest CPU change per step, cores.
        cpu_step: f64,
        /// Largest memory change per step.
        mem_step: f64,
        /// Relative noise on each step (seeded): ± this fraction of the demand; 0 for none.
        jitter: f64,
    },
}

impl Demand {
    /// Whether the trace draws random numbers.
    pub fn is_random(&self) -> bool {
        match self {
            Demand::Constant { jitter, .. }
            | Demand::Steps { jitter, .. }
            | Demand::Sine { jitter, .. } => *jitter > 0.0,
            Demand::RandomWalk {
                cpu_step,
                mem_step,
                jitter,
                ..
            } => *cpu_step > 0.0 || *mem_step > 0.0 || *jitter > 0.0,
        }
    }

    fn jitter(&self) -> f64 {
        match self {
            Demand::Constant { jitter, .. }
            | Demand::Steps { jitter, .. }
            | Demand::Sine { jitter, .. }
            | Demand::RandomWalk { jitter, .. } => *jitter,
        }
    }

    /// `(cpu cores, memory fraction)` for steps `0..steps`, CPU within `0..=vcpus`, memory within
    /// `0..=1`. `stream` separates the VMs' random numbers.
    pub fn trace(&self, vcpus: u32, steps: u32, seed: u64, stream: u64) -> Vec<(f64, f64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let max_cpu = f64::from(vcpus);
        let clamp = |cpu: f64, mem: f64| (cpu.clamp(0.0, max_cpu), mem.clamp(0.0, 1.0));
        let jitter = self.jitter();
        let mut walk = match self {
            Demand::RandomWalk { cpu, mem, .. } => clamp(*cpu, *mem),
            _ => (0.0, 0.0),
        };
        let mut out = Vec::with_capacity(steps as usize);
        for t in 0..steps {
            let (cpu, mem) = match self {
                Demand::Constant { cpu, mem, .. } => (*cpu, *mem),
                Demand::Steps { points, .. } => {
                    let mut cur = points.first().map_or((0.0, 0.0), |p| (p.1, p.2));
                    for &(from, c, m) in points {
                        if from <= t {
                            cur = (c, m);
                        }
                    }
                    cur
                }
                Demand::Sine {
                    cpu,
                    mem,
                    cpu_amplitude,
                    mem_amplitude,
                    period,
                    phase,
                    ..
                } => {
                    let s = (std::f64::consts::TAU * (f64::from(t) + phase) / period).sin();
                    (cpu + cpu_amplitude * s, mem + mem_amplitude * s)
                }
                Demand::RandomWalk {
                    cpu_step, mem_step, ..
                } => {
                    let now = walk;
                    let dc = if *cpu_step > 0.0 {
                        rng.random_range(-cpu_step..=*cpu_step)
                    } else {
                        0.0
                    };
                    let dm = if *mem_step > 0.0 {
                        rng.random_range(-mem_step..=*mem_step)
                    } else {
                        0.0
                    };
                    walk = clamp(walk.0 + dc, walk.1 + dm);
                    now
                }
            };
            let (cpu, mem) = if jitter > 0.0 {
                let jc: f64 = rng.random_range(-jitter..=jitter);
                let jm: f64 = rng.random_range(-jitter..=jitter);
                (cpu * (1.0 + jc), mem * (1.0 + jm))
            } else {
                (cpu, mem)
            };
            out.push(clamp(cpu, mem));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_until_the_next_point() {
        let d = Demand::Steps {
            points: vec![(2, 1.0, 0.5), (4, 3.0, 0.25)],
            jitter: 0.0,
        };
        let t = d.trace(2, 6, 0, 0);
        let cpus: Vec<f64> = t.iter().map(|p| p.0).collect();
        // Clamped to the VM's 2 vCPUs from step 4 on.
        assert_eq!(cpus, vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(t[5].1, 0.25);
    }

    #[test]
    fn sine_peaks_a_quarter_period_in() {
        let d = Demand::Sine {
            cpu: 2.0,
            mem: 0.5,
            cpu_amplitude: 1.0,
            mem_amplitude: 0.0,
            period: 8.0,
            phase: 0.0,
            jitter: 0.0,
        };
        let t = d.trace(8, 8, 0, 0);
        assert!((t[0].0 - 2.0).abs() < 1e-9);
        assert!((t[2].0 - 3.0).abs() < 1e-9);
        assert!((t[6].0 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn random_walk_depends_on_seed_and_stream_only() {
        let d = Demand::RandomWalk {
            cpu: 1.0,
            mem: 0.5,
            cpu_step: 0.3,
            mem_step: 0.05,
            jitter: 0.0,
        };
        assert!(d.is_random());
        let a = d.trace(4, 50, 7, 3);
        assert_eq!(a, d.trace(4, 50, 7, 3));
        assert_ne!(a, d.trace(4, 50, 8, 3));
        assert_ne!(a, d.trace(4, 50, 7, 4));
        assert_eq!(a[0], (1.0, 0.5));
        assert!(a
            .iter()
            .all(|&(c, m)| (0.0..=4.0).contains(&c) && (0.0..=1.0).contains(&m)));
    }
}
