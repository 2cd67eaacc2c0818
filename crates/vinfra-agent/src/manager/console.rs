//! A VM's serial console, live: its log read from an offset (a poller gets each byte once) and
//! input typed on its serial port through the port's socket (`run/serial.sock`, QEMU's).
//!
//! QEMU owns `run/`: it could put a link or a FIFO in place of its log or its socket. The log
//! is opened as [`super::Manager::console_log`] opens it (no link followed, a plain file only);
//! the socket must be a socket (not a link), and the process listening on it must be the VM's
//! own QEMU (its pid, from the socket's peer credentials), or nothing is typed.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;
use vinfra_proto::MAX_CONSOLE_INPUT;
use vinfra_types::PowerState;

use super::console_chunk::ConsoleChunk;
use super::error::{io_err, ManagerError, Result, StateConflict};
use super::{Manager, MAX_CONSOLE_BYTES};

/// Longest a write to the serial port takes: connecting, writing, and waiting for QEMU to
/// have read it all (a guest that does not read its port holds QEMU's reads back).
const WRITE_WITHIN: Duration = Duration::from_secs(1);

/// Where a read of a log of `len` bytes starts: at `from` when the log has it, else (no `from`,
/// or one past the end: the log was rotated, or is another host's) at the last `max` bytes.
fn read_start(from: Option<u64>, len: u64, max: u64) -> u64 {
    match from {
        Some(f) if f <= len => f,
        _ => len.saturating_sub(max),
    }
}

/// How much of `buf` to return: all of it but an incomplete UTF-8 sequence at its end (the
/// next read starts with it, once the log holds it whole). A sequence that can never be
/// complete is kept (and replaced when decoded).
fn whole_utf8_len(buf: &[u8]) -> usize {
    let mut done = 0;
    loop {
        match std::str::from_utf8(&buf[done..]) {
            Ok(_) => return buf.len(),
            Err(e) => match e.error_len() {
                None => return done + e.valid_up_to(),
                Some(bad) => done += e.valid_up_to() + bad,
            },
        }
    }
}

impl Manager {
    /// The serial console's log from byte `from` (or its tail), at most `max_bytes` (and
    /// [`MAX_CONSOLE_BYTES`]).
    pub async fn console_read(
        &self,
        id: Uuid,
        from: Option<u64>,
        max_bytes: u64,
    ) -> Result<ConsoleChunk> {
        let (files, running) = {
            let e = self.entry(id).await?;
            let mut vm = e.vm.lock().await;
            let running = vm.check_alive();
            (vm.files.clone(), running)
        };
        let max = max_bytes.clamp(1, MAX_CONSOLE_BYTES);
        tokio::task::spawn_blocking(move || {
            let input = running
                && std::fs::symlink_metadata(files.serial_socket())
                    .is_ok_and(|m| m.file_type().is_socket());
            let path = [files.serial_log(), files.legacy_serial_log()]
                .into_iter()
                .find(|p| std::fs::symlink_metadata(p).is_ok());
            let Some(path) = path else {
                return Ok(ConsoleChunk {
                    text: String::new(),
                    start: 0,
                    end: 0,
                    input,
                });
            };
            let mut f = crate::confine::open_plain(&path, false)?;
            let len = f.metadata().map_err(io_err(&path))?.len();
            let start = read_start(from, len, max);
            f.seek(SeekFrom::Start(start)).map_err(io_err(&path))?;
            let mut buf = Vec::new();
            f.take(max.min(len - start))
                .read_to_end(&mut buf)
                .map_err(io_err(&path))?;
            buf.truncate(whole_utf8_len(&buf));
            Ok(ConsoleChunk {
                text: String::from_utf8_lossy(&buf).into_owned(),
                start,
                end: start + buf.len() as u64,
                input,
            })
        })
        .await?
    }

    /// Types `text` on the VM's serial port: connects to the port's socket, writes, and hangs
    /// up once QEMU has read it all (or after [`WRITE_WITHIN`]).
    pub async fn console_write(&self, id: Uuid, text: &str) -> Result<()> {
        if text.len() > MAX_CONSOLE_INPUT {
            return Err(ManagerError::ConsoleInput(format!(
                "{} bytes of input, at most {MAX_CONSOLE_INPUT} at once",
                text.len()
            )));
        }
        let (socket, pid) = {
            let e = self.entry(id).await?;
            let mut vm = e.vm.lock().await;
            if !vm.check_alive() {
                let state = vm.state().await;
                return Err(ManagerError::BadState {
                    id,
                    state,
                    conflict: StateConflict::ConsoleNotRunning,
                });
            }
            (vm.files.serial_socket(), vm.pid())
        };
        let is_socket = std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(ManagerError::BadState {
                id,
                state: PowerState::Running,
                conflict: StateConflict::NoConsoleInput,
            });
        }
        let write = async {
            let mut stream = tokio::net::UnixStream::connect(&socket)
                .await
                .map_err(io_err(&socket))?;
            let peer = stream.peer_cred().map_err(io_err(&socket))?;
            let listener = peer.pid().and_then(|p| u32::try_from(p).ok());
            if pid.is_some() && listener != pid {
                return Err(ManagerError::ConsoleInput(format!(
                    "{} is not the VM's QEMU's (pid {pid:?}, listener {listener:?})",
                    socket.display()
                )));
            }
            stream
                .write_all(text.as_bytes())
                .await
                .map_err(io_err(&socket))?;
            stream.shutdown().await.map_err(io_err(&socket))?;
            // QEMU hangs up once it has read everything up to our end: wait for that (what
            // the guest prints meanwhile is in the log too).
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await.map_err(io_err(&socket))? > 0 {}
            Ok(())
        };
        match tokio::time::timeout(WRITE_WITHIN, write).await {
            Ok(done) => done,
            // Written, and not read yet: the guest does not read its serial port now. What
            // QEMU has not read stays in the socket's buffer until it does.
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_start_where_asked_or_at_the_tail() {
        assert_eq!(read_start(Some(10), 100, 50), 10);
        assert_eq!(read_start(Some(100), 100, 50), 100);
        // Past the end: a rotated log (or another host's) starts over at its tail.
        assert_eq!(read_start(Some(101), 100, 50), 50);
        assert_eq!(read_start(None, 100, 50), 50);
        assert_eq!(read_start(None, 20, 50), 0);
    }

    #[test]
    fn an_incomplete_utf8_sequence_waits_for_the_next_read() {
        let e_acute = "é".as_bytes();
        assert_eq!(whole_utf8_len(b"abc"), 3);
        assert_eq!(whole_utf8_len(&[b'a', e_acute[0]]), 1);
        let euro = "€".as_bytes();
        assert_eq!(whole_utf8_len(&[b'a', b'b', euro[0], euro[1]]), 2);
        assert_eq!(whole_utf8_len("a€".as_bytes()), 4);
        // Invalid for good: kept (decoded as a replacement character).
        assert_eq!(whole_utf8_len(&[b'a', 0xff]), 2);
        assert_eq!(whole_utf8_len(&[0xff, b'a', 0xff, euro[0]]), 3);
        assert_eq!(whole_utf8_len(&[]), 0);
    }
}
