//! `vinfra vm console NAME --follow`: the serial console as the guest writes it, and each line
//! typed on standard input sent to it (Enter sends a carriage return, as a terminal's does),
//! until interrupted. A VM that moves is followed to its new host (whose log starts over).

use std::io::{BufRead, Write};
use std::time::Duration;

use vinfra_client::{Client, RestError};
use vinfra_types::api::ConsoleLog;

use crate::output::Output;
use crate::rest::RestCommandError;

/// How often the console is asked for what came since the last read.
const POLL: Duration = Duration::from_millis(300);
/// Longest wait between two reads after failed ones.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Prints the last `bytes` of `name`'s serial console, then what follows as it comes (in
/// JSON, each read as one line); lines on standard input are typed on the console. A read that
/// fails for a while (the VM's host unreachable, the console restarting) is said once on
/// standard error and tried again; a refusal (the VM is gone, the token no longer valid) ends it.
pub fn follow(api: &Client, out: Output, name: &str, bytes: u64) -> Result<(), RestCommandError> {
    let mut log = api.console_log(name, Some(bytes))?;
    let typist = api.clone();
    let vm = name.to_string();
    std::thread::spawn(move || type_lines(&typist, &vm));
    if !print(out, &log) {
        return Ok(());
    }
    let mut host = log.host.clone();
    let mut wait = POLL;
    let mut failing = false;
    loop {
        std::thread::sleep(wait);
        let mut moved = false;
        let read = match api.console_from(name, Some(log.end)) {
            Ok(next) if next.host != host => {
                // Moved: the offset was the old host's; the new host's log from its tail.
                eprintln!(
                    "vinfra: {name} runs on {} now: its console from there",
                    next.host
                );
                host = next.host.clone();
                moved = true;
                api.console_from(name, None)
            }
            read => read,
        };
        let next = match read {
            Ok(next) => next,
            Err(e) if is_transient(&e) => {
                if !failing {
                    eprintln!(
                        "vinfra: reading {name}'s console: {} (trying again)",
                        vinfra_types::error::chain(&e)
                    );
                    failing = true;
                }
                wait = (wait * 2).min(RETRY_MAX);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if failing {
            eprintln!("vinfra: reading {name}'s console again");
            failing = false;
        }
        wait = POLL;
        if !moved && next.start != log.end && next.start != 0 {
            eprintln!(
                "vinfra: {name}'s console log skipped from offset {} to {} (rotated or too far behind)",
                log.end, next.start
            );
        }
        log = next;
        if !log.text.is_empty() && !print(out, &log) {
            return Ok(());
        }
    }
}

/// A failure that may pass: no answer, a timeout, the console or the VM's host unavailable
/// for now (5xx), or too many requests.
fn is_transient(e: &RestError) -> bool {
    match e.status() {
        Some(status) => status == 429 || status >= 500,
        None => matches!(e, RestError::Transport { .. } | RestError::Body { .. }),
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

/// Sends each line read from standard input to the console, Enter as `\r` (bytes that are not
/// UTF-8 as U+FFFD); a refusal (the VM does not run, another typist) is one line on standard
/// error and typing goes on.
fn type_lines(api: &Client, name: &str) {
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Err(e) = api.console_input(name, &format!("{text}\r")) {
            eprintln!(
                "vinfra: typing on {name}'s console: {}",
                vinfra_types::error::chain(&e)
            );
        }
    }
}
