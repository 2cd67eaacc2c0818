//! `vinfra-switchd --control PATH [--underlay-ip IP] [--underlay-mtu N] [--busy-poll] [--no-fast-path]`: the switch daemon on
//! its own, as `vinfra switch` runs it (used by the tests and benchmarks of this crate).

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = vinfra_switchd::SwitchdConfig::new("/run/vinfra/switch.sock");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--busy-poll" {
            config.busy_poll = true;
            continue;
        }
        if arg == "--no-fast-path" {
            config.fast_path = false;
            continue;
        }
        let value = args.next();
        let parsed = match (arg.as_str(), value) {
            ("--control", Some(v)) => {
                config.control = v.into();
                Ok(())
            }
            ("--underlay-ip", Some(v)) => v
                .parse()
                .map(|ip| config.underlay_ip = Some(ip))
                .map_err(|_| v),
            ("--underlay-mtu", Some(v)) => {
                v.parse().map(|m| config.underlay_mtu = m).map_err(|_| v)
            }
            (_, v) => Err(format!("{arg} {}", v.unwrap_or_default())),
        };
        if let Err(bad) = parsed {
            eprintln!("vinfra-switchd: bad argument: {bad}");
            return ExitCode::from(2);
        }
    }
    match vinfra_switchd::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vinfra-switchd: {}", vinfra_types::error::Chain(&e));
            ExitCode::FAILURE
        }
    }
}
