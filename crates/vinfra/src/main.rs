//! `vinfra`: parses the command line, runs it, prints an error as one line and exits with 2 (bad
//! usage or input) or 1 (anything else).

use clap::error::ErrorKind;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the C library's allocator: the console serves thousands of agent
/// connections from a few threads, each message a few short-lived buffers; glibc's malloc
/// spent ~8% of the console's CPU in placement bursts (docs/benchmarks.md, 2026-12-06) and
/// mimalloc's thread-local free lists about half that. The console's benchmarks, which run the
/// console in their own process, use it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match vinfra::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                std::process::exit(vinfra::EXIT_USAGE);
            }
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("bad usage");
                eprintln!(
                    "vinfra: {} (see --help)",
                    first.trim_start_matches("error: ")
                );
                std::process::exit(vinfra::EXIT_USAGE);
            }
        },
    };
    let default = if cli.command.is_daemon() {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = vinfra::run(cli) {
        eprintln!(
            "vinfra: {}",
            vinfra::output::terminal_safe(&vinfra_types::error::chain(&e))
        );
        std::process::exit(e.exit_code());
    }
}
