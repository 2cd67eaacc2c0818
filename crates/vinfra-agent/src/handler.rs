//! Carries out one console command on the [`Manager`].

use std::time::Duration;

use vinfra_proto::{AgentCommand, CommandError, CommandReply};

use crate::ha::GuardSettings;
use crate::manager::Manager;

/// Longest stop timeout accepted, seconds.
pub const MAX_STOP_TIMEOUT_S: u64 = 3600;

/// Runs `command` and returns the reply the console gets.
pub async fn handle(m: &Manager, command: AgentCommand) -> Result<CommandReply, CommandError> {
    use AgentCommand as C;
    Ok(match command {
        C::CreateVm { vm, start } => CommandReply::Vm {
            vm: m.create(vm, start).await?,
        },
        C::StartVm { id, slot } => {
            m.learn_slot(id, slot).await?;
            CommandReply::Vm {
                vm: m.start(id).await?,
            }
        }
        C::StopVm {
            id,
            force,
            timeout_s,
        } => {
            let t = Duration::from_secs(timeout_s.min(MAX_STOP_TIMEOUT_S));
            let (vm, how) = m.stop(id, force, t).await?;
            CommandReply::Stopped { vm, how }
        }
        C::RebootVm { id } => CommandReply::Vm {
            vm: m.reboot(id).await?,
        },
        C::DeleteVm { id, delete_disks } => {
            m.delete(id, delete_disks).await?;
            CommandReply::Done
        }
        C::PrepareIncoming { vm, tls } => CommandReply::Incoming {
            encrypted: tls.is_some(),
            uri: m.prepare_incoming(vm, tls).await?,
        },
        C::MigrateOut {
            id,
            uri,
            settings,
            tls,
            redirect_to,
        } => {
            m.migrate_out(id, &uri, settings, tls, redirect_to).await?;
            CommandReply::Done
        }
        C::MigrationStatus { id, wait_ms } => CommandReply::Migration {
            status: m
                .migration_status(id, std::time::Duration::from_millis(wait_ms))
                .await?,
        },
        C::CancelMigration { id } => {
            m.cancel_migration(id).await?;
            CommandReply::Done
        }
        C::FinishMigrationSource { id } => {
            m.finish_migration_source(id).await?;
            CommandReply::Done
        }
        C::AbortIncoming { id } => {
            m.abort_incoming(id).await?;
            CommandReply::Done
        }
        C::ConsoleLog { id, max_bytes } => CommandReply::Console {
            text: m.console_log(id, max_bytes).await?,
        },
        C::ConsoleRead {
            id,
            from,
            max_bytes,
        } => {
            let chunk = m.console_read(id, from, max_bytes).await?;
            CommandReply::ConsoleChunk {
                text: chunk.text,
                start: chunk.start,
                end: chunk.end,
                input: chunk.input,
            }
        }
        C::ConsoleWrite { id, text } => {
            m.console_write(id, &text).await?;
            CommandReply::Done
        }
        C::ObserveVm { id, wait_ms } => CommandReply::Vm {
            vm: m
                .observe_arrival(id, Duration::from_millis(wait_ms))
                .await?,
        },
        C::ApplySwitchConfig { config } => {
            m.apply_switch_config(config).await?;
            CommandReply::Done
        }
        C::SwitchCounters => CommandReply::SwitchCounters {
            counters: m.switch_counters().await?,
        },
        C::SetHa {
            isolation_response,
            timings,
        } => {
            m.set_ha_settings(GuardSettings {
                isolation_response,
                timings,
            })?;
            CommandReply::Done
        }
        C::ExportConnections { id } => CommandReply::Connections {
            nics: m.export_connections(id).await?,
        },
        C::ImportConnections { id, nics } => {
            m.import_connections(id, nics).await?;
            CommandReply::Done
        }
        C::SetVmHa { id, ha } => {
            m.set_vm_ha(id, ha).await?;
            CommandReply::Done
        }
        C::SetFlowExport { collector } => {
            m.set_flow_collector(collector);
            CommandReply::Done
        }
    })
}
