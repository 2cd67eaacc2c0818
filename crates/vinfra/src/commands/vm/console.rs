//! `vinfra vm console NAME --follow`: the serial console as the guest writes it, and each line
//! typed on standard input sent to it (Enter sends a carriage return, as a terminal's does),
//! until interrupted. A VM that moves is followed to its new host (whose log starts over).

use std::io::{BufRead, Write};
use std::time::Duration;

use vinfra_client::Client;
use vinfra_types::api::ConsoleLog;

use crate::output::Output;
use crate::rest::RestCommandError;

/// How often the console is asked for what came since the last read.
const POLL: Duration = Duration::from_millis(300);

/// Prints the last `bytes` of `name`'s serial console, then what follows as it comes (in
/// JSON, each read as one line); lines on standard input are typed on the console.
pub fn follow(api: &Client, out: Output, name: &str, bytes: u64) -> Result<(), RestCommandError> {
    let typist = api.clone();
    let vm = name.to_string();
    std::thread::spawn(move || type_lines(&typist, &vm));
    let mut log = api.console_log(name, Some(bytes))?;
    let host = log.host.clone();
    if !print(out, &log) {
        return Ok(());
    }
    let mut host = host;
    loop {
        std::thread::sleep(POLL);
        log = api.console_from(name, Some(log.end))?;
        if log.host != host {
            eprintln!(
                "vinfra: {name} runs on {} now: its console from there",
                log.host
            );
            host = log.host.clone();
        }
        if !log.text.is_empty() && !print(out, &log) {
            return Ok(());
        }
    }
}

/// Writes a read to standard output; false once that is closed (a pipe's reader gone).
fn print(out: Output, log: &ConsoleLog) -> bool {
    let mut stdout = std::io::stdout().lock();
    let written = match out {
        Output::Json => serde_json::to_string(log)
            .map_err(std::io::Error::other)
            .and_then(|line| writeln!(stdout, "{line}")),
        _ => stdout.write_all(log.text.as_bytes()),
    };
    written.and_then(|()| stdout.flush()).is_ok()
}

/// Sends each line read from standard input to the console, Enter as `\r`; a refusal (the VM
/// does not run, another typist) is one line on standard error and typing goes on.
fn type_lines(api: &Client, name: &str) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        if let Err(e) = api.console_input(name, &format!("{line}\r")) {
            eprintln!(
                "vinfra: typing on {name}'s console: {}",
                vinfra_types::error::chain(&e)
            );
        }
    }
}
