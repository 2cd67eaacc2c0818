//! The REST commands: `host`, `settings`, `join-token`, `token`, `vm`, `events`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vinfra_lab::{ApiClient, ApiError};
use vinfra_types::api::{
    ClusterSettings, ConsoleLog, CreateVmRequest, Event, JoinTokenResponse, MigrateVmRequest,
    StopVmRequest, TokenResponse, UpdateHostRequest,
};
use vinfra_types::{
    AllocationRatios, BootSource, HostSummary, MigrationPhase, MigrationProgress, VmSpec, VmSummary,
};

use crate::cli::{
    CreateArgs, HostCommand, JoinTokenCommand, Output, SettingsCommand, TokenCommand, VmCommand,
};
use crate::output;

/// Why a REST command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A name given on the command line is not valid.
    #[error("bad {what} name: {source}")]
    Name {
        what: &'static str,
        #[source]
        source: vinfra_types::NameError,
    },
    /// The VM specification is not valid.
    #[error("invalid VM: {0}")]
    Spec(#[from] vinfra_types::vm::SpecError),
    /// The arguments do not make a request.
    #[error("{0}")]
    Usage(String),
    /// The REST call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The migration ended without switching over.
    #[error("migration of {vm} {outcome}: {reason}")]
    Migration {
        vm: String,
        outcome: &'static str,
        reason: String,
    },
    /// The API answered something that is not the expected JSON.
    #[error("unexpected answer from the console: {0}")]
    Decode(String),
}

impl CommandError {
    /// True when the user's input was at fault.
    pub fn is_usage(&self) -> bool {
        match self {
            CommandError::Name { .. } | CommandError::Spec(_) | CommandError::Usage(_) => true,
            CommandError::Api(e) => e.is_client_error(),
            CommandError::Migration { .. } | CommandError::Decode(_) => false,
        }
    }
}

fn check(what: &'static str, name: &str) -> Result<(), CommandError> {
    vinfra_types::validate_name(name).map_err(|source| CommandError::Name { what, source })
}

/// Decodes an API body into its type.
pub(crate) fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, CommandError> {
    serde_json::from_value(v.clone()).map_err(|e| CommandError::Decode(e.to_string()))
}

fn print_json(v: &Value) {
    crate::out!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Sends a request and prints the body as JSON (json output) or `render(body)` (table output).
pub(crate) fn call(
    api: &ApiClient,
    out: Output,
    method: Method,
    path: &str,
    body: Option<Value>,
    render: impl FnOnce(&Value) -> Result<String, CommandError>,
) -> Result<(), CommandError> {
    let resp = api
        .request(method, path, body.as_ref())?
        .unwrap_or(Value::Null);
    match out {
        Output::Json => print_json(&resp),
        Output::Table => {
            let text = render(&resp)?;
            if !text.is_empty() {
                crate::out!("{text}");
            }
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, CommandError> {
    serde_json::to_value(v).map_err(|e| CommandError::Decode(e.to_string()))
}

/// `vinfra host …`.
pub fn host(api: &ApiClient, out: Output, cmd: &HostCommand) -> Result<(), CommandError> {
    match cmd {
        HostCommand::List => call(api, out, Method::GET, "/api/v1/hosts", None, |v| {
            Ok(output::hosts(&decode::<Vec<HostSummary>>(v)?))
        }),
        HostCommand::Show { name, switch: true } => {
            check("host", name)?;
            call(
                api,
                out,
                Method::GET,
                &format!("/api/v1/hosts/{name}/switch"),
                None,
                |v| {
                    // VM names for the port table; ids stand in when the list is unavailable.
                    let vms: Vec<VmSummary> = api.get("/api/v1/vms").unwrap_or_default();
                    let names = vms.into_iter().map(|v| (v.id, v.name)).collect();
                    Ok(crate::net::host_switch_text(name, &decode(v)?, &names))
                },
            )
        }
        HostCommand::Show { name, .. } => {
            check("host", name)?;
            call(
                api,
                out,
                Method::GET,
                &format!("/api/v1/hosts/{name}"),
                None,
                |v| Ok(output::host(&decode(v)?)),
            )
        }
        HostCommand::Set {
            name,
            cpu_ratio,
            memory_ratio,
            clear_ratios,
            maintenance,
        } => {
            check("host", name)?;
            let path = format!("/api/v1/hosts/{name}");
            let ratios = if *clear_ratios {
                Some(None)
            } else if cpu_ratio.is_some() || memory_ratio.is_some() {
                // Fill in the ratio not given from what is in force on the host.
                let current: HostSummary = api.get(&path)?;
                Some(Some(AllocationRatios {
                    cpu: cpu_ratio.unwrap_or(current.ratios.cpu),
                    memory: memory_ratio.unwrap_or(current.ratios.memory),
                }))
            } else {
                None
            };
            if ratios.is_none() && maintenance.is_none() {
                return Err(CommandError::Usage(
                    "nothing to change: give --cpu-ratio, --memory-ratio, --clear-ratios or --maintenance".into(),
                ));
            }
            let req = UpdateHostRequest {
                ratios,
                maintenance: *maintenance,
            };
            call(
                api,
                out,
                Method::PATCH,
                &path,
                Some(to_json(&req)?),
                |v| match decode::<HostSummary>(v) {
                    Ok(h) => Ok(output::host(&h)),
                    Err(_) => Ok(format!("host {name} updated")),
                },
            )
        }
        HostCommand::Remove { name } => {
            check("host", name)?;
            call(
                api,
                out,
                Method::DELETE,
                &format!("/api/v1/hosts/{name}"),
                None,
                |_| Ok(format!("host {name} removed")),
            )
        }
    }
}

/// `vinfra settings …`.
pub fn settings(api: &ApiClient, out: Output, cmd: &SettingsCommand) -> Result<(), CommandError> {
    match cmd {
        SettingsCommand::Show => call(api, out, Method::GET, "/api/v1/settings", None, |v| {
            Ok(output::settings(&decode(v)?))
        }),
        SettingsCommand::Set {
            cpu_ratio,
            memory_ratio,
            migration_bandwidth,
            migration_downtime,
        } => {
            if cpu_ratio.is_none()
                && memory_ratio.is_none()
                && migration_bandwidth.is_none()
                && migration_downtime.is_none()
            {
                return Err(CommandError::Usage(
                    "nothing to change: give --cpu-ratio, --memory-ratio, --migration-bandwidth \
                     and/or --migration-downtime"
                        .into(),
                ));
            }
            let mut s: ClusterSettings = api.get("/api/v1/settings")?;
            s.ratios.cpu = cpu_ratio.unwrap_or(s.ratios.cpu);
            s.ratios.memory = memory_ratio.unwrap_or(s.ratios.memory);
            if let Some(b) = migration_bandwidth {
                s.migration_max_bandwidth_mib = b.as_setting();
            }
            if let Some(d) = migration_downtime {
                s.migration_downtime_limit_ms = Some(*d);
            }
            call(
                api,
                out,
                Method::PUT,
                "/api/v1/settings",
                Some(to_json(&s)?),
                |v| {
                    Ok(output::settings(
                        &decode::<ClusterSettings>(v).unwrap_or(s.clone()),
                    ))
                },
            )
        }
    }
}

/// `vinfra join-token create`.
pub fn join_token(
    api: &ApiClient,
    out: Output,
    cmd: &JoinTokenCommand,
) -> Result<(), CommandError> {
    match cmd {
        JoinTokenCommand::Create => call(
            api,
            out,
            Method::POST,
            "/api/v1/join-tokens",
            Some(Value::Object(Default::default())),
            |v| {
                let t: JoinTokenResponse = decode(v)?;
                Ok(format!(
                "{}\n\nOne-time token, valid {}: start the new host's agent with --join-token <token>.",
                t.token,
                output::duration_s(t.expires_in_s)
            ))
            },
        ),
    }
}

/// `vinfra token rotate`.
pub fn token(api: &ApiClient, out: Output, cmd: &TokenCommand) -> Result<(), CommandError> {
    match cmd {
        TokenCommand::Rotate => {
            call(api, out, Method::POST, "/api/v1/token/rotate", None, |v| {
                let t: TokenResponse = decode(v)?;
                Ok(format!("{}\n\nThe previous token no longer works: update VINFRA_TOKEN or the config file.", t.token))
            })
        }
    }
}

/// `vinfra events`.
pub fn events(api: &ApiClient, out: Output) -> Result<(), CommandError> {
    call(api, out, Method::GET, "/api/v1/events", None, |v| {
        Ok(output::events(&decode::<Vec<Event>>(v)?))
    })
}

/// Builds the create request from the arguments, checking it like the console will.
pub fn create_request(a: &CreateArgs) -> Result<CreateVmRequest, CommandError> {
    check("VM", &a.name)?;
    if let Some(h) = &a.host {
        check("host", h)?;
    }
    let boot = match (&a.kernel, a.boot_disk) {
        (Some(kernel), _) => BootSource::Kernel {
            kernel: kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone().unwrap_or_default(),
        },
        (None, true) => BootSource::Disk,
        (None, false) if !a.disk.is_empty() => BootSource::Disk,
        (None, false) => {
            return Err(CommandError::Usage(
                "say how the VM boots: --kernel FILE [--initrd FILE] [--cmdline S], or --boot-disk with --disk".into(),
            ))
        }
    };
    let spec = VmSpec {
        name: a.name.clone(),
        vcpus: a.vcpus,
        memory_mib: a.memory,
        boot,
        disks: a.disk.clone(),
        nics: a.nic.clone(),
    };
    spec.validate()?;
    Ok(CreateVmRequest {
        spec,
        host: a.host.clone(),
        start: !a.no_start,
    })
}

/// `vinfra vm …`. `vm create` checks its input before it needs `api`.
pub fn vm(
    api: impl FnOnce() -> Result<ApiClient, crate::Error>,
    out: Output,
    cmd: &VmCommand,
) -> Result<(), crate::Error> {
    if let VmCommand::Create(a) = cmd {
        let req = create_request(a)?;
        let api = api()?;
        return Ok(call(
            &api,
            out,
            Method::POST,
            "/api/v1/vms",
            Some(to_json(&req)?),
            |v| {
                let vm: VmSummary = decode(v)?;
                Ok(format!(
                    "VM {} created on {}{}",
                    vm.name,
                    vm.host,
                    if req.start {
                        ", starting"
                    } else {
                        " (stopped)"
                    }
                ))
            },
        )?);
    }
    let name = match cmd {
        VmCommand::List | VmCommand::Create(_) => None,
        VmCommand::Show { name }
        | VmCommand::Start { name }
        | VmCommand::Stop { name, .. }
        | VmCommand::Reboot { name }
        | VmCommand::Delete { name }
        | VmCommand::Migrate { name, .. }
        | VmCommand::Console { name, .. } => Some(name.as_str()),
    };
    if let Some(name) = name {
        check("VM", name)?;
    }
    if let VmCommand::Migrate { to: Some(to), .. } = cmd {
        check("host", to)?;
    }
    let api = api()?;
    let vm_path = |n: &str| format!("/api/v1/vms/{n}");
    let r = match cmd {
        VmCommand::List => call(&api, out, Method::GET, "/api/v1/vms", None, |v| {
            Ok(output::vms(&decode::<Vec<VmSummary>>(v)?))
        }),
        VmCommand::Show { name } => call(&api, out, Method::GET, &vm_path(name), None, |v| {
            Ok(output::vm(&decode(v)?))
        }),
        VmCommand::Create(_) => Ok(()),
        VmCommand::Start { name } => action(&api, out, name, "start", None, "started"),
        VmCommand::Reboot { name } => action(&api, out, name, "reboot", None, "rebooting"),
        VmCommand::Stop {
            name,
            force,
            timeout,
        } => {
            let req = StopVmRequest {
                force: *force,
                timeout_s: timeout.map(|t| t.as_secs()),
            };
            action(&api, out, name, "stop", Some(to_json(&req)?), "stopped")
        }
        VmCommand::Delete { name } => call(&api, out, Method::DELETE, &vm_path(name), None, |_| {
            Ok(format!("VM {name} deleted"))
        }),
        VmCommand::Console { name, bytes } => {
            let path = format!("{}/console?bytes={bytes}", vm_path(name));
            call(&api, out, Method::GET, &path, None, |v| {
                let log: ConsoleLog = decode(v)?;
                Ok(log.text.trim_end_matches('\n').to_string())
            })
        }
        VmCommand::Migrate {
            name,
            to,
            cancel,
            no_wait,
        } => migrate(&api, out, name, to.clone(), *cancel, *no_wait),
    };
    Ok(r?)
}

fn action(
    api: &ApiClient,
    out: Output,
    name: &str,
    verb: &str,
    body: Option<Value>,
    done: &str,
) -> Result<(), CommandError> {
    let path = format!("/api/v1/vms/{name}/{verb}");
    let body = body.or_else(|| Some(Value::Object(Default::default())));
    call(api, out, Method::POST, &path, body, |_| {
        Ok(format!("VM {name} {done}"))
    })
}

fn migrate(
    api: &ApiClient,
    out: Output,
    name: &str,
    to: Option<String>,
    cancel: bool,
    no_wait: bool,
) -> Result<(), CommandError> {
    let path = format!("/api/v1/vms/{name}/migration");
    if cancel {
        return call(api, out, Method::DELETE, &path, None, |_| {
            Ok(format!("migration of VM {name} cancelled"))
        });
    }
    let req = MigrateVmRequest { to };
    let started: MigrationProgress = api.post(&format!("/api/v1/vms/{name}/migrate"), &req)?;
    if no_wait {
        return match out {
            Output::Json => {
                print_json(&to_json(&started)?);
                Ok(())
            }
            Output::Table => {
                crate::out!(
                    "migration of VM {} from {} to {} started (vinfra vm migrate {} --cancel to stop it)",
                    started.vm, started.source, started.destination, started.vm
                );
                Ok(())
            }
        };
    }
    let last = watch_migration(api, &path, started)?;
    match out {
        Output::Json => print_json(&to_json(&last)?),
        Output::Table if last.phase == MigrationPhase::Completed => {
            crate::out!("{}", output::migration_done(&last))
        }
        Output::Table => {}
    }
    match last.phase {
        MigrationPhase::Completed => Ok(()),
        phase => Err(CommandError::Migration {
            vm: last.vm.clone(),
            outcome: if phase == MigrationPhase::Cancelled {
                "was cancelled"
            } else {
                "failed"
            },
            reason: last
                .error
                .clone()
                .unwrap_or_else(|| "the VM still runs on the source".into()),
        }),
    }
}

/// Polls the migration every 200 ms, drawing a progress bar on a terminal, until it ends.
fn watch_migration(
    api: &ApiClient,
    path: &str,
    first: MigrationProgress,
) -> Result<MigrationProgress, CommandError> {
    let bar =
        ProgressBar::with_draw_target(Some(first.total_bytes.max(1)), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!(
        "{} {} → {}",
        first.vm, first.source, first.destination
    ));
    let mut p = first;
    let mut failures = 0u32;
    loop {
        bar.set_length(p.total_bytes.max(1));
        bar.set_position(p.transferred_bytes.min(p.total_bytes.max(1)));
        bar.set_message(format!(
            "{}, {}, {} left, dirtying {} pages/s",
            output::snake(&p.phase),
            output::rate_bps(p.rate_bps),
            output::bytes(p.remaining_bytes),
            p.dirty_pages_rate
        ));
        if p.phase.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        match api.get::<MigrationProgress>(path) {
            Ok(next) => {
                failures = 0;
                p = next;
            }
            // A lost poll or two (console busy) is not the migration failing.
            Err(e) if !e.is_client_error() && failures < 25 => failures += 1,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        }
    }
    bar.finish_and_clear();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut CreateArgs)) -> CreateArgs {
        let mut a = CreateArgs {
            name: "web-1".into(),
            vcpus: 1,
            memory: 128,
            host: None,
            kernel: Some("vinfra-guest-vmlinuz".into()),
            initrd: None,
            cmdline: None,
            boot_disk: false,
            disk: vec![],
            nic: vec![],
            no_start: false,
        };
        f(&mut a);
        a
    }

    #[test]
    fn create_requests() {
        let r = create_request(&args(|_| {})).unwrap();
        assert!(r.start);
        assert!(matches!(r.spec.boot, BootSource::Kernel { .. }));
        assert!(create_request(&args(|a| a.kernel = None)).is_err());
        assert!(create_request(&args(|a| a.name = "Bad_Name".into()))
            .unwrap_err()
            .is_usage());
        assert!(create_request(&args(|a| a.kernel = Some("../etc/passwd".into()))).is_err());
        let disk = vinfra_types::DiskSpec {
            name: "root".into(),
            image: None,
            size_gib: Some(1),
        };
        let r = create_request(&args(|a| {
            a.kernel = None;
            a.disk = vec![disk.clone()];
        }))
        .unwrap();
        assert_eq!(r.spec.boot, BootSource::Disk);
    }
}
