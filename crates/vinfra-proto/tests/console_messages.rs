//! The serial console's agent commands and reply on the wire (protocol 14).

use uuid::Uuid;
use vinfra_proto::{AgentCommand, CommandReply};

#[test]
fn the_serial_console_on_the_wire() {
    let id = Uuid::from_u128(9);
    let read = AgentCommand::ConsoleRead {
        id,
        from: Some(700),
        max_bytes: 65536,
    };
    let json = serde_json::to_value(&read).unwrap();
    assert_eq!(json["command"], "console_read");
    assert_eq!(json["from"], 700);
    assert_eq!(serde_json::from_value::<AgentCommand>(json).unwrap(), read);
    // Without `from`: the tail.
    let tail: AgentCommand = serde_json::from_value(serde_json::json!({
        "command": "console_read", "id": id, "max_bytes": 10
    }))
    .unwrap();
    assert_eq!(
        tail,
        AgentCommand::ConsoleRead {
            id,
            from: None,
            max_bytes: 10
        }
    );
    let write = AgentCommand::ConsoleWrite {
        id,
        text: "ls\r".into(),
    };
    let json = serde_json::to_value(&write).unwrap();
    assert_eq!(json["command"], "console_write");
    assert_eq!(serde_json::from_value::<AgentCommand>(json).unwrap(), write);
    // Neither changes the VM: no report before the answer.
    assert!(!read.changes_vm_state() && !write.changes_vm_state());
    let chunk = CommandReply::ConsoleChunk {
        text: "login: ".into(),
        start: 700,
        end: 707,
        input: true,
    };
    let json = serde_json::to_value(&chunk).unwrap();
    assert_eq!(json["reply"], "console_chunk");
    assert_eq!(serde_json::from_value::<CommandReply>(json).unwrap(), chunk);
}
