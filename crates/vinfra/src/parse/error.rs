//! Why a command-line value was refused.

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value is not a size like `512M` or `2G`.
    #[error("'{value}' is not a size: use a whole number with a unit M/MiB, G/GiB or T/TiB (e.g. {example})")]
    Size {
        /// The value given.
        value: String,
        /// Sizes that would do.
        example: &'static str,
    },
    /// The value is negative.
    #[error("{what} must be positive, got '{value}'")]
    Negative {
        /// What the value is.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The value is zero.
    #[error("{what} must be greater than 0")]
    Zero {
        /// What the value is.
        what: &'static str,
    },
    /// The value is outside the accepted range.
    #[error("{what} must be between {min} and {max}, got {value}")]
    Range {
        /// What the value is.
        what: &'static str,
        /// The smallest accepted, with its unit.
        min: String,
        /// The largest accepted, with its unit.
        max: String,
        /// The value given.
        value: String,
    },
    /// The value is not a whole number.
    #[error("{what} must be a whole number, got '{value}'")]
    Number {
        /// What the value is.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The value is not a duration.
    #[error("'{value}' is not a duration (e.g. 30s, 2m)")]
    Duration {
        /// The value given.
        value: String,
    },
    /// The value is not `on` or `off`.
    #[error("'{value}' is neither on nor off")]
    OnOff {
        /// The value given.
        value: String,
    },
    /// The fence command is not acceptable.
    #[error("{reason}")]
    Fence {
        /// Why, in the words of `vinfra_types::ha`.
        reason: String,
    },
    /// A `key=value` list (or a value in it) is malformed.
    #[error("{what} '{value}': {reason}")]
    List {
        /// What the list is (`disk`, `nic`, …).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}
