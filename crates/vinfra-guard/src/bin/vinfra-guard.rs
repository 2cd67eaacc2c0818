//! `vinfra-guard --host NAME --datastore DIR [--control PATH] [--renew D] [--lease-timeout D]
//! [--margin D] [--self-fence-after D] [--agent-grace D] [--heartbeat D]
//! [--heartbeat-timeout D] [--shutdown-wait D]`: the guard on its own, as `vinfra guard` runs
//! it (used by the tests of this crate). Durations are written `100ms`, `3s`, …; the timings
//! hold until the agent's first pet.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = vinfra_guard::GuardConfig::new("", "");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("vinfra-guard: {arg} needs a value");
            return ExitCode::from(2);
        };
        match arg.as_str() {
            "--host" => {
                config.host = value;
                continue;
            }
            "--datastore" => {
                config.datastore = value.into();
                continue;
            }
            "--control" => {
                config.control = value.into();
                continue;
            }
            _ => {}
        }
        let t = &mut config.timings;
        let slot = match arg.as_str() {
            "--renew" => &mut t.renew,
            "--lease-timeout" => &mut t.lease_timeout,
            "--margin" => &mut t.margin,
            "--self-fence-after" => &mut t.self_fence_after,
            "--agent-grace" => &mut t.agent_grace,
            "--heartbeat" => &mut t.heartbeat,
            "--heartbeat-timeout" => &mut t.heartbeat_timeout,
            "--shutdown-wait" => &mut config.shutdown_wait,
            _ => {
                eprintln!("vinfra-guard: unknown option {arg}");
                return ExitCode::from(2);
            }
        };
        let parsed = humantime::parse_duration(&value).map(|d| *slot = d);
        if let Err(e) = parsed {
            eprintln!("vinfra-guard: bad argument {arg} {value}: {e}");
            return ExitCode::from(2);
        }
    }
    if config.datastore.as_os_str().is_empty() {
        eprintln!("vinfra-guard: --host and --datastore are needed");
        return ExitCode::from(2);
    }
    match vinfra_guard::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vinfra-guard: {}", vinfra_types::error::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
