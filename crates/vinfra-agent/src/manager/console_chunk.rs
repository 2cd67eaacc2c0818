//! [`ConsoleChunk`]: what a read of a VM's serial console log answers.

/// A part of the serial console's log ([`super::Manager::console_read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleChunk {
    /// The bytes from `start` to `end`, as text (invalid UTF-8 replaced).
    pub text: String,
    /// The log offset the text starts at.
    pub start: u64,
    /// The log offset after the text.
    pub end: u64,
    /// The console takes input now.
    pub input: bool,
}
