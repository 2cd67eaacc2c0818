//! `vinfra ha show|set`: the cluster's high-availability settings (host failures tolerated,
//! isolation response, fencing isolated hosts), each host's HA state and the admission reserve.
//!
//! `show` prints its sections one after the other ([`HaShow`]; as JSON, one object with a key
//! per section: `settings`, `hosts`, `reserve`, from `GET /api/v1/ha`). `set` reads the settings, changes the fields given and puts
//! them back, as `vinfra settings set` and `vinfra drs set` do.

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use vinfra_types::ha::{HaReserve, HaScenario, HaSettings, HostHaStatus, IsolationResponse};

use crate::config::ConnectionOverrides;
use crate::output::{self, pairs, Output};
use crate::parse;
use crate::rest::{show, RestCommandError};

/// `vinfra ha …`.
#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// The cluster's HA settings, each host's HA state and the admission reserve.
    Show,
    /// Change the cluster's HA settings (only what is given changes).
    Set(HaSetArgs),
}

/// An isolation response on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    /// The VMs of an isolated host run on (the default).
    KeepRunning,
    /// An isolated host kills its HA VMs, which then restart elsewhere.
    PowerOff,
    /// An isolated host shuts its HA VMs down (ACPI, killed after 60 s).
    Shutdown,
}

impl From<IsolationArg> for IsolationResponse {
    fn from(a: IsolationArg) -> Self {
        match a {
            IsolationArg::KeepRunning => IsolationResponse::KeepRunning,
            IsolationArg::PowerOff => IsolationResponse::PowerOff,
            IsolationArg::Shutdown => IsolationResponse::Shutdown,
        }
    }
}

/// `vinfra ha set`.
#[derive(Debug, Args)]
pub struct HaSetArgs {
    /// Host failures the cluster keeps room for (0 to 32): powering on an HA VM that would
    /// break this reserve is refused.
    #[arg(long, value_parser = |v: &str| parse::bounded(v, "tolerate-host-failures", 0, 32),
          allow_hyphen_values = true, value_name = "N")]
    pub tolerate_host_failures: Option<u64>,
    /// What an isolated host does with its HA VMs.
    #[arg(long, value_enum, value_name = "RESPONSE")]
    pub isolation_response: Option<IsolationArg>,
    /// Fence an isolated host with HA VMs (its fence command) and restart them elsewhere.
    #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
    pub fence_isolated: Option<bool>,
    /// How long a host stays isolated before it is fenced: `30s`, `2m` (5 s to 1 h).
    #[arg(long, value_parser = parse::isolation_fence_after, allow_hyphen_values = true,
          value_name = "DURATION")]
    pub isolation_fence_after: Option<u64>,
}

impl HaSetArgs {
    /// `settings` with the fields given changed; [`RestCommandError::NothingToChange`] when
    /// none is.
    pub fn apply(&self, settings: &HaSettings) -> Result<HaSettings, RestCommandError> {
        if self.tolerate_host_failures.is_none()
            && self.isolation_response.is_none()
            && self.fence_isolated.is_none()
            && self.isolation_fence_after.is_none()
        {
            return Err(RestCommandError::NothingToChange(
                "--tolerate-host-failures, --isolation-response, --fence-isolated and/or \
                 --isolation-fence-after",
            ));
        }
        let mut s = settings.clone();
        if let Some(n) = self.tolerate_host_failures {
            s.tolerate_host_failures = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(r) = self.isolation_response {
            s.isolation_response = r.into();
        }
        if let Some(f) = self.fence_isolated {
            s.fence_isolated = f;
        }
        if let Some(secs) = self.isolation_fence_after {
            s.isolation_fence_after_s = secs;
        }
        Ok(s)
    }
}

/// What `vinfra ha show` prints: one field per section (`--output json` prints this object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HaShow {
    /// The cluster's HA settings.
    pub settings: HaSettings,
    /// Each host's HA state (`ha show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostHaStatus>>,
    /// The admission reserve (`ha show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve: Option<HaReserve>,
}

impl HaShow {
    /// The sections as text, one after the other.
    pub fn text(&self) -> String {
        let mut out = settings_text(&self.settings);
        if let Some(hosts) = &self.hosts {
            out.push_str("\n\n");
            out.push_str(&hosts_text(hosts));
        }
        if let Some(r) = &self.reserve {
            out.push_str("\n\n");
            out.push_str(&reserve_text(r));
        }
        out
    }
}

/// Each host's HA state as a table.
pub fn hosts_text(hosts: &[HostHaStatus]) -> String {
    if hosts.is_empty() {
        return "No hosts.".into();
    }
    let mut t = output::table(&["HOST", "HA STATE", "FOR", "LEASE", "DETAIL"]);
    for h in hosts {
        t.add_row(vec![
            h.name.clone(),
            h.state.clone(),
            output::duration_s(h.for_s),
            h.lease.map_or_else(
                || "-".into(),
                |l| format!("{}/{}", l.incarnation, l.counter),
            ),
            h.detail.clone(),
        ]);
    }
    output::render(t)
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The reserve: whether it holds, and each failing scenario (or each scenario listed).
pub fn reserve_text(r: &HaReserve) -> String {
    let failures = plural(r.tolerate as usize, "host failure");
    if !r.enforced {
        let why = if r.tolerate == 0 {
            "tolerates 0 host failures".to_string()
        } else {
            "no HA VM runs".to_string()
        };
        return format!("Reserve: not enforced ({why})");
    }
    let mut lines = Vec::new();
    if r.holds {
        let whose = if r.tolerate == 1 {
            "every host's HA VMs restart elsewhere".to_string()
        } else {
            format!(
                "the HA VMs of the {} hosts running the most HA memory restart elsewhere",
                r.tolerate
            )
        };
        lines.push(format!(
            "Reserve: tolerates {failures}: {whose} ({}, {})",
            plural(r.ha_vms, "HA VM"),
            plural(r.scenarios_total, "scenario")
        ));
    } else {
        lines.push(format!(
            "Reserve: BROKEN: {} of {} fail (tolerate {failures}; {})",
            r.scenarios_total - r.scenarios_holding,
            plural(r.scenarios_total, "scenario"),
            plural(r.ha_vms, "HA VM"),
        ));
    }
    for s in &r.scenarios {
        lines.push(format!("  {}", scenario_line(s)));
    }
    lines.join("\n")
}

/// One scenario on one line.
fn scenario_line(s: &HaScenario) -> String {
    let hosts = s.failed.join(" + ");
    let size = |vcpus: u64, mib: u64| format!("{vcpus} vCPU, {}", output::mib(mib));
    let vms = plural(s.vms.len(), "HA VM");
    if s.holds {
        let placed: Vec<String> = s
            .vms
            .iter()
            .map(|v| format!("{} → {}", v.vm, v.restarts_on.as_deref().unwrap_or("?")))
            .collect();
        format!(
            "{hosts} fails: {vms} ({}) restart: {}",
            size(s.demand_vcpus, s.demand_memory_mib),
            placed.join(", ")
        )
    } else {
        let unplaced: Vec<String> = s
            .vms
            .iter()
            .filter(|v| v.restarts_on.is_none())
            .map(|v| format!("{} ({})", v.vm, size(u64::from(v.vcpus), v.memory_mib)))
            .collect();
        format!(
            "{hosts} fails: {vms} to restart, short of {}: {} cannot restart",
            size(s.shortfall_vcpus, s.shortfall_memory_mib),
            unplaced.join(", ")
        )
    }
}

/// The HA settings as `Key: value` lines.
pub fn settings_text(s: &HaSettings) -> String {
    pairs(&[
        (
            "Tolerated host failures",
            s.tolerate_host_failures.to_string(),
        ),
        ("Isolation response", s.isolation_response.to_string()),
        (
            "Fence isolated hosts",
            if s.fence_isolated {
                format!("on, after {} s", s.isolation_fence_after_s)
            } else {
                format!("off (would be after {} s)", s.isolation_fence_after_s)
            },
        ),
    ])
}

/// `vinfra ha …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &HaCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        HaCommand::Show => {
            let api = conn.client()?;
            let status = api.ha()?;
            let shown = HaShow {
                settings: status.settings,
                hosts: Some(status.hosts),
                reserve: Some(status.reserve),
            };
            show(out, &shown, HaShow::text)
        }
        HaCommand::Set(a) => {
            let api = conn.client()?;
            let mut s = api.settings()?;
            s.ha = a.apply(&s.ha)?;
            let stored = api.put_settings(&s)?;
            let shown = HaShow {
                settings: stored.ha,
                hosts: None,
                reserve: None,
            };
            show(out, &shown, HaShow::text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra ha` alone.
    #[derive(Debug, Parser)]
    struct Ha {
        #[command(subcommand)]
        cmd: HaCommand,
    }

    fn set(argv: &[&str]) -> Result<HaSetArgs, clap::Error> {
        let mut all = vec!["ha", "set"];
        all.extend_from_slice(argv);
        Ha::try_parse_from(all).map(|h| match h.cmd {
            HaCommand::Set(a) => a,
            HaCommand::Show => panic!("set expected"),
        })
    }

    #[test]
    fn set_changes_only_what_is_given() {
        let before = HaSettings::default();
        let a = set(&[
            "--isolation-response",
            "power-off",
            "--fence-isolated",
            "on",
        ])
        .unwrap();
        let after = a.apply(&before).unwrap();
        assert_eq!(
            after,
            HaSettings {
                isolation_response: IsolationResponse::PowerOff,
                fence_isolated: true,
                ..before.clone()
            }
        );
        let a = set(&[
            "--tolerate-host-failures",
            "0",
            "--isolation-fence-after",
            "2m",
        ])
        .unwrap();
        let after = a.apply(&before).unwrap();
        assert_eq!(
            (after.tolerate_host_failures, after.isolation_fence_after_s),
            (0, 120)
        );
        assert!(matches!(
            set(&[]).unwrap().apply(&before),
            Err(RestCommandError::NothingToChange(_))
        ));
        for bad in [
            &["--tolerate-host-failures", "33"][..],
            &["--tolerate-host-failures", "-1"],
            &["--isolation-response", "reboot"],
            &["--fence-isolated", "maybe"],
            &["--isolation-fence-after", "4s"],
            &["--isolation-fence-after", "2h"],
        ] {
            assert!(set(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn show_prints_every_setting() {
        let shown = HaShow {
            settings: HaSettings {
                tolerate_host_failures: 2,
                isolation_response: IsolationResponse::Shutdown,
                fence_isolated: true,
                isolation_fence_after_s: 45,
            },
            hosts: None,
            reserve: None,
        };
        let text = shown.text();
        for (key, value) in [
            ("Tolerated host failures:", "2"),
            ("Isolation response:", "shutdown"),
            ("Fence isolated hosts:", "on, after 45 s"),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(key) && l.ends_with(value)),
                "{key} {value} in {text}"
            );
        }
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["settings"]["isolation_response"], "shutdown");
        assert!(json.get("reserve").is_none());
    }

    fn need(vm: &str, gib: u64, on: Option<&str>) -> vinfra_types::ha::HaRestartNeed {
        vinfra_types::ha::HaRestartNeed {
            vm: vm.into(),
            vcpus: 2,
            memory_mib: gib * 1024,
            restarts_on: on.map(Into::into),
        }
    }

    #[test]
    fn show_prints_hosts_and_the_reserve() {
        use vinfra_types::ha::LeaseStamp;
        let host = |name: &str, state: &str, lease| HostHaStatus {
            name: name.into(),
            state: state.into(),
            detail: state.into(),
            for_s: 75,
            lease,
        };
        let mut reserve = HaReserve {
            tolerate: 1,
            enforced: true,
            holds: true,
            ha_vms: 2,
            scenarios_total: 1,
            scenarios_holding: 1,
            scenarios: vec![HaScenario {
                failed: vec!["h1".into()],
                holds: true,
                vms: vec![need("web", 4, Some("h2"))],
                demand_vcpus: 2,
                demand_memory_mib: 4096,
                shortfall_vcpus: 0,
                shortfall_memory_mib: 0,
            }],
        };
        let mut shown = HaShow {
            settings: HaSettings::default(),
            hosts: Some(vec![
                host("h1", "connected", None),
                host(
                    "h2",
                    "failed",
                    Some(LeaseStamp {
                        incarnation: 3,
                        counter: 41,
                    }),
                ),
            ]),
            reserve: Some(reserve.clone()),
        };
        let text = shown.text();
        assert!(
            text.lines().any(|l| l.starts_with("h2")
                && l.contains("failed")
                && l.contains("1m15s")
                && l.contains("3/41")),
            "{text}"
        );
        assert!(
            text.contains(
                "Reserve: tolerates 1 host failure: every host's HA VMs restart elsewhere"
            ),
            "{text}"
        );
        assert!(
            text.contains("h1 fails: 1 HA VM (2 vCPU, 4.0 GiB) restart: web → h2"),
            "{text}"
        );
        reserve.holds = false;
        reserve.scenarios_holding = 0;
        reserve.scenarios[0] = HaScenario {
            failed: vec!["h1".into()],
            holds: false,
            vms: vec![need("web", 4, Some("h2")), need("db", 8, None)],
            demand_vcpus: 4,
            demand_memory_mib: 12 * 1024,
            shortfall_vcpus: 2,
            shortfall_memory_mib: 8 * 1024,
        };
        shown.reserve = Some(reserve);
        let text = shown.text();
        assert!(
            text.contains(
                "Reserve: BROKEN: 1 of 1 scenario fail (tolerate 1 host failure; 2 HA VMs)"
            ),
            "{text}"
        );
        assert!(
            text.contains("h1 fails: 2 HA VMs to restart, short of 2 vCPU, 8.0 GiB: db (2 vCPU, 8.0 GiB) cannot restart"),
            "{text}"
        );
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["hosts"][1]["lease"]["counter"], 41);
        assert_eq!(
            json["reserve"]["scenarios"][0]["vms"][1]["restarts_on"],
            serde_json::Value::Null
        );
    }
}
