//! The one way every vinfra process prints an error: the error and its sources, once each.
//!
//! Errors carry their cause as `#[source]` and do not repeat it in their own message
//! (`"cannot open the store"`, not `"cannot open the store: {0}"`); whoever prints an error for a
//! human (the CLI's one line, a log line, a reply sent to the console) prints the chain with
//! [`chain`] or [`Chain`].

use std::error::Error;
use std::fmt;

/// An error and its sources joined by `": "`, on one line (line breaks inside a message become
/// spaces). A source whose text is already part of the line is not repeated.
pub fn chain(e: &dyn Error) -> String {
    Chain(e).to_string()
}

/// Displays an error as [`chain`] does, for `format!`, `tracing` and `write!` without allocating
/// first: `tracing::warn!("reconnect failed: {}", Chain(&e))`.
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = s.source();
        }
        let line = parts.join(": ");
        let mut first = true;
        for piece in line
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(piece)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("disk full\nretry later")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start: disk full")]
    struct Repeats(#[source] Inner2);

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct Inner2;

    #[test]
    fn sources_follow_on_one_line() {
        assert_eq!(
            chain(&Outer(Inner)),
            "cannot open the store: disk full retry later"
        );
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        assert_eq!(chain(&Repeats(Inner2)), "cannot start: disk full");
    }
}
