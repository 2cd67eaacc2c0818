//! The priority class of a port's frames.

/// A priority class: at every place frames wait behind others, a higher class goes first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Class {
    /// After the others.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before the others.
    High,
}

impl Class {
    /// 0 for low, 1 normal, 2 high.
    pub fn index(self) -> usize {
        match self {
            Class::Low => 0,
            Class::Normal => 1,
            Class::High => 2,
        }
    }
}
