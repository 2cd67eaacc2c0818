//! `vinfra vm usage` and `vinfra host usage`: the last hour of CPU and memory as a table.

use vinfra_types::usage::UsageHistory;

use super::{table, timestamp, trim};

/// One row per interval, oldest first: its start (UTC), CPU in cores, memory in MiB; a line
/// that says so when there is none.
pub fn usage(h: &UsageHistory) -> String {
    if h.samples.is_empty() {
        return format!(
            "no usage in the last hour (one sample per {} s while it runs)",
            h.interval_s
        );
    }
    let mut t = table(&["TIME", "CPU (cores)", "MEMORY (MiB)"]);
    for s in &h.samples {
        t.add_row(vec![
            timestamp(s.at),
            format!("{:.2}", s.cpu_cores),
            s.memory_mib.to_string(),
        ]);
    }
    trim(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_types::usage::UsageSample;

    #[test]
    fn a_history_is_one_row_per_interval_and_none_says_so() {
        let h = UsageHistory {
            interval_s: 10,
            samples: vec![UsageSample {
                at: 0,
                cpu_cores: 0.256,
                memory_mib: 300,
            }],
        };
        let text = usage(&h);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].starts_with("TIME"), "{text}");
        assert!(
            rows[1].contains("0.26") && rows[1].ends_with("300"),
            "{text}"
        );
        let none = usage(&UsageHistory {
            interval_s: 10,
            samples: vec![],
        });
        assert!(none.starts_with("no usage in the last hour"), "{none}");
    }
}
