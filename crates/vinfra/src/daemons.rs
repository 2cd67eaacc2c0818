//! `vinfra console`, `vinfra agent` and `vinfra switch`: the long-running processes (console and
//! agent each on one tokio runtime).

use crate::cli::{AgentArgs, ConsoleArgs, SwitchArgs};

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The console failed.
    #[error("console")]
    Console(#[source] vinfra_console::ConsoleError),
    /// The agent failed.
    #[error("agent")]
    Agent(#[source] vinfra_agent::AgentError),
    /// The switch failed.
    #[error("switch")]
    Switch(#[source] vinfra_switchd::SwitchdError),
}

fn runtime() -> Result<tokio::runtime::Runtime, DaemonError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)
}

/// Runs the console until SIGTERM or ctrl-c.
pub fn console(a: &ConsoleArgs) -> Result<(), DaemonError> {
    let config = vinfra_console::ConsoleConfig {
        data_dir: a.data_dir.clone(),
        api_listen: a.listen,
        agent_listen: a.agent_listen,
        agent_listen_netns: a.agent_listen_netns.clone(),
        advertise_names: a.advertise.clone(),
        token_file: a.token_file.clone(),
        tls: !a.no_tls,
        ..vinfra_console::ConsoleConfig::new(a.data_dir.clone())
    };
    runtime()?
        .block_on(vinfra_console::run(config))
        .map_err(DaemonError::Console)
}

/// Runs the agent until it is stopped.
pub fn agent(a: &AgentArgs) -> Result<(), DaemonError> {
    let config = vinfra_agent::AgentConfig {
        data_dir: a.data_dir.clone(),
        console: a.console.clone(),
        join_token: a.join_token.clone(),
        host_name: a.name.clone(),
        address: a.address,
        datastore: a.datastore.clone(),
        cores: a.cores,
        memory_mib: a.memory_mib,
        qemu_binary: a.qemu.clone(),
        report_interval: a.report_interval,
        switch_control: a.switch_control.clone(),
        underlay_ip: a.underlay_ip,
        underlay_mtu: a.underlay_mtu,
        trunk_interface: a.trunk_interface.clone(),
    };
    runtime()?
        .block_on(vinfra_agent::run(config))
        .map_err(DaemonError::Agent)
}

/// Runs the virtual switch (its own threads, no async runtime) until it fails.
pub fn switch(a: &SwitchArgs) -> Result<(), DaemonError> {
    let config = vinfra_switchd::SwitchdConfig {
        control: a.control.clone(),
        underlay_ip: a.underlay_ip,
        underlay_mtu: a.underlay_mtu,
    };
    vinfra_switchd::run(config).map_err(DaemonError::Switch)
}
