//! Host capacity and usage, and per-VM usage, from `/proc`.

use std::time::Instant;

use vinfra_types::{HostCapacity, HostUsage, VmUsage};

/// Errors reading `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// a /proc file could not be read
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// a /proc file did not have the expected content
    #[error("unexpected content in {0}")]
    Parse(String),
}

fn read(path: &str) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|source| UsageError::Read {
        path: path.into(),
        source,
    })
}

/// A `/proc/meminfo` field in KiB.
fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The host's capacity: logical CPUs and memory, each replaced by its override when given.
pub fn host_capacity(
    cores: Option<u32>,
    memory_mib: Option<u64>,
) -> Result<HostCapacity, UsageError> {
    let cores = match cores {
        Some(c) => c,
        None => {
            let text = read("/proc/cpuinfo")?;
            let n = text.lines().filter(|l| l.starts_with("processor")).count();
            u32::try_from(n.max(1)).unwrap_or(u32::MAX)
        }
    };
    let memory_mib = match memory_mib {
        Some(m) => m,
        None => {
            meminfo_kib(&read("/proc/meminfo")?, "MemTotal")
                .ok_or_else(|| UsageError::Parse("/proc/meminfo".into()))?
                / 1024
        }
    };
    Ok(HostCapacity { cores, memory_mib })
}

/// Clock ticks per second of /proc times.
fn ticks_per_s() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// (busy, total) jiffies over all CPUs from /proc/stat.
fn cpu_jiffies() -> Result<(u64, u64), UsageError> {
    let text = read("/proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| UsageError::Parse("/proc/stat".into()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return Err(UsageError::Parse("/proc/stat".into()));
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Ok((total - idle.min(total), total))
}

/// CPU time (user + system) of a process, milliseconds.
pub fn process_cpu_ms(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime is field 14 overall = index 11 here, stime index 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000 / ticks_per_s())
}

/// Resident memory of a process, MiB.
pub fn process_rss_mib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    meminfo_kib(&text, "VmRSS").map(|k| k / 1024)
}

/// Storage bytes a process read and wrote (`read_bytes`, `write_bytes` of `/proc/<pid>/io`:
/// what the kernel sent to and asked of block devices and network filesystems on its behalf,
/// page-cache hits not included).
pub fn process_io_bytes(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("read_bytes")?, field("write_bytes")?))
}

/// Remembers earlier samples so that CPU use can be given as a rate: since the last
/// [`Sampler::commit`] (the agent commits when it sent a report, so a report's use is averaged
/// over the time since the previous one sent, however many were read and left unsent between).
#[derive(Debug, Default)]
pub struct Sampler {
    /// Host (busy, total) jiffies at the last commit, and the latest reading.
    host: Option<(u64, u64)>,
    host_latest: Option<(u64, u64)>,
    /// Per QEMU process: (CPU ms, when) at the last commit, and the latest reading.
    vms: std::collections::HashMap<u32, [(u64, Instant); 2]>,
}

impl Sampler {
    /// Host usage since the last commit (the first call measures since boot, and marks the
    /// start of the next measure).
    pub fn host_usage(&mut self, cores: u32) -> Result<HostUsage, UsageError> {
        let (busy, total) = cpu_jiffies()?;
        let (pb, pt) = match self.host {
            Some(base) => base,
            None => {
                self.host = Some((busy, total));
                (0, 0)
            }
        };
        self.host_latest = Some((busy, total));
        let dt = total.saturating_sub(pt);
        let cpu_cores = if dt == 0 {
            0.0
        } else {
            busy.saturating_sub(pb) as f64 / dt as f64 * f64::from(cores)
        };
        let mem = read("/proc/meminfo")?;
        let total_kib = meminfo_kib(&mem, "MemTotal")
            .ok_or_else(|| UsageError::Parse("/proc/meminfo".into()))?;
        let avail_kib = meminfo_kib(&mem, "MemAvailable").unwrap_or(0);
        Ok(HostUsage {
            cpu_cores,
            memory_used_mib: total_kib.saturating_sub(avail_kib) / 1024,
        })
    }

    /// Usage of the QEMU process `pid` since the last commit (0 cores at the first call for
    /// it, which marks the start of its measure).
    pub fn vm_usage(&mut self, pid: u32) -> VmUsage {
        let now = Instant::now();
        let cpu_time_ms = process_cpu_ms(pid).unwrap_or(0);
        let cpu_cores = match self.vms.get_mut(&pid) {
            Some([(prev, at), latest]) => {
                *latest = (cpu_time_ms, now);
                let dt = now.duration_since(*at).as_millis() as f64;
                if dt > 0.0 {
                    cpu_time_ms.saturating_sub(*prev) as f64 / dt
                } else {
                    0.0
                }
            }
            None => {
                self.vms.insert(pid, [(cpu_time_ms, now); 2]);
                0.0
            }
        };
        VmUsage {
            cpu_time_ms,
            cpu_cores,
            rss_mib: process_rss_mib(pid).unwrap_or(0),
        }
    }

    /// The next rates are measured from the latest readings.
    pub fn commit(&mut self) {
        if let Some(latest) = self.host_latest {
            self.host = Some(latest);
        }
        for [base, latest] in self.vms.values_mut() {
            *base = *latest;
        }
    }

    /// Forgets processes not in `alive`.
    pub fn retain(&mut self, alive: &[u32]) {
        self.vms.retain(|pid, _| alive.contains(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        let cap = host_capacity(None, None).unwrap();
        assert!(cap.cores >= 1 && cap.memory_mib > 0);
        assert_eq!(
            host_capacity(Some(64), Some(1000)).unwrap(),
            HostCapacity {
                cores: 64,
                memory_mib: 1000
            }
        );
        let mut s = Sampler::default();
        let u = s.host_usage(cap.cores).unwrap();
        assert!(u.memory_used_mib > 0 && u.memory_used_mib <= cap.memory_mib);
        // Burn CPU in this process until /proc shows 100 ms more, and see the sampler count it.
        let me = std::process::id();
        let first = s.vm_usage(me);
        let t = Instant::now();
        let mut x = 0u64;
        while process_cpu_ms(me).unwrap_or(0) < first.cpu_time_ms + 100 {
            assert!(
                t.elapsed().as_secs() < 20,
                "CPU time of this process does not grow"
            );
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
        }
        let second = s.vm_usage(me);
        assert!(
            second.cpu_time_ms >= first.cpu_time_ms + 100,
            "{first:?} {second:?}"
        );
        assert!(second.cpu_cores > 0.0, "{second:?}");
        assert!(second.rss_mib > 0);
        // This process's storage I/O is readable (its values depend on the filesystem).
        assert!(process_io_bytes(me).is_some());
        assert_eq!(process_io_bytes(u32::MAX), None);
    }
}
