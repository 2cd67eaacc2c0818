//! `vinfra vm usage` and `vinfra host usage`: the last hour of CPU and memory (and a VM's
//! network) as a table.

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
    // A VM's network, when its host's switch counted it.
    let net = h
        .samples
        .iter()
        .any(|s| s.rx_bytes_per_s.is_some() || s.tx_bytes_per_s.is_some());
    let mut header = vec!["TIME", "CPU (cores)", "MEMORY (MiB)"];
    if net {
        header.extend(["IN (bytes/s)", "OUT (bytes/s)"]);
    }
    let mut t = table(&header);
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    for s in &h.samples {
        let mut row = vec![
            timestamp(s.at),
            format!("{:.2}", s.cpu_cores),
            s.memory_mib.to_string(),
        ];
        if net {
            row.extend([rate(s.rx_bytes_per_s), rate(s.tx_bytes_per_s)]);
        }
        t.add_row(row);
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
                rx_bytes_per_s: None,
                tx_bytes_per_s: None,
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
        let mut with_net = h.clone();
        with_net.samples[0].rx_bytes_per_s = Some(2048.4);
        let text = usage(&with_net);
        assert!(
            text.lines().next().unwrap().ends_with("OUT (bytes/s)"),
            "{text}"
        );
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[row.len() - 2..], ["2048", "-"], "{text}");
        let none = usage(&UsageHistory {
            interval_s: 10,
            samples: vec![],
        });
        assert!(none.starts_with("no usage in the last hour"), "{none}");
    }
}
