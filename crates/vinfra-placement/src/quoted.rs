//! A list of names shown quoted in messages: `'a', 'b'`.

use std::fmt;

/// Names (rules, VMs, networks) that a message shows quoted and comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quoted(pub Vec<String>);

impl Quoted {
    /// The names, from anything that yields string slices.
    pub fn of<'a>(items: impl IntoIterator<Item = &'a str>) -> Quoted {
        Quoted(items.into_iter().map(str::to_owned).collect())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no name.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "'{n}'")?;
        }
        Ok(())
    }
}
