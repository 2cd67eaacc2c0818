//! The serial console live against the fake QEMU: the log read from offsets (each byte once, a
//! rotated log read again from its tail, a UTF-8 sequence not cut), and input refused with the
//! reason: a stopped VM, a QEMU without the serial socket (one an older agent started), a
//! socket another process listens on.

use super::*;

#[tokio::test]
async fn the_log_is_read_from_an_offset_each_byte_once() {
    let h = host().await;
    let id = h.running("c1").await;
    let log = h.m.serial_log_path(id).await.unwrap();
    std::fs::write(&log, "line one\r\n").unwrap();

    let tail = h.m.console_read(id, None, 4).await.unwrap();
    assert_eq!(
        (tail.text.as_str(), tail.start, tail.end),
        ("ne\r\n", 6, 10)
    );
    let all = h.m.console_read(id, Some(0), 1 << 16).await.unwrap();
    assert_eq!((all.text.as_str(), all.end), ("line one\r\n", 10));
    // No socket: a QEMU an older agent started takes no input.
    assert!(!all.input);

    // What comes next, once; "é" half written waits for its second byte.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    use std::io::Write;
    f.write_all(&[b'x', 0xc3]).unwrap();
    let next = h.m.console_read(id, Some(all.end), 1 << 16).await.unwrap();
    assert_eq!((next.text.as_str(), next.start, next.end), ("x", 10, 11));
    f.write_all(&[0xa9]).unwrap();
    let next = h.m.console_read(id, Some(next.end), 1 << 16).await.unwrap();
    assert_eq!((next.text.as_str(), next.end), ("é", 13));
    let none = h.m.console_read(id, Some(next.end), 1 << 16).await.unwrap();
    assert_eq!((none.text.as_str(), none.start, none.end), ("", 13, 13));

    // Rotated (emptied in place): an offset past the end reads the tail.
    std::fs::write(&log, "new\r\n").unwrap();
    let again = h.m.console_read(id, Some(13), 1 << 16).await.unwrap();
    assert_eq!(
        (again.text.as_str(), again.start, again.end),
        ("new\r\n", 0, 5)
    );
}

#[tokio::test]
async fn input_is_refused_with_the_reason() {
    let h = host().await;
    let id = h.running("c2").await;
    // The fake QEMU made no socket: as a QEMU an older agent started.
    let e = h.m.console_write(id, "ls\r").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("this VM's serial console takes no input until it restarts"),
        "{e}"
    );

    // A socket the VM's QEMU does not listen on gets nothing.
    let socket = h.vm_dir(id).join("run/serial.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let e = h.m.console_write(id, "ls\r").await.unwrap_err();
    assert!(e.to_string().contains("is not the VM's QEMU's"), "{e}");
    let read = h.m.console_read(id, None, 10).await.unwrap();
    assert!(read.input, "a running VM with its socket takes input");
    drop(listener);

    let e = h.m.console_write(id, &"a".repeat(4097)).await.unwrap_err();
    assert!(e.to_string().contains("at most 4096"), "{e}");

    h.m.stop(id, true, LONG).await.unwrap();
    let e = h.m.console_write(id, "ls\r").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("its serial console takes input only while it runs"),
        "{e}"
    );
    let read = h.m.console_read(id, None, 10).await.unwrap();
    assert!(!read.input);
}
