//! Names of VMs, hosts, disks and images.
//!
//! A name is a DNS label: 1 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
//! File names (images in a datastore) allow `.` and `_` too, but never `/`, `..`, a leading `.`,
//! or anything that is not printable ASCII, so that no name can step out of its directory.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("name '{name}' is longer than {max} characters")]
    TooLong {
        /// The name, shortened for the message.
        name: String,
        /// The longest allowed, characters.
        max: usize,
    },
    /// The name has a character that is not allowed.
    #[error("name '{name}' has a character that is not allowed (allowed: {allowed})")]
    BadChar {
        /// The name.
        name: String,
        /// The characters allowed, in words.
        allowed: &'static str,
    },
    /// The name starts or ends with a character that is not allowed there.
    #[error("name '{name}' must start and end with a letter or digit")]
    BadEdge {
        /// The name.
        name: String,
    },
}

const NAME_MAX: usize = 63;
const FILE_NAME_MAX: usize = 128;

/// Checks a VM, host or disk name: a DNS label (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong {
            name: shorten(name),
            max: NAME_MAX,
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::BadChar {
            name: shorten(name),
            allowed: "lower-case letters, digits and '-'",
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::BadEdge {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Checks a file name inside a datastore directory (an image, a kernel, an initrd).
/// Allows `[A-Za-z0-9._-]`, must start with a letter or digit; refuses `/`, `..` and hidden names.
pub fn validate_file_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > FILE_NAME_MAX {
        return Err(NameError::TooLong {
            name: shorten(name),
            max: FILE_NAME_MAX,
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(NameError::BadChar {
            name: shorten(name),
            allowed: "letters, digits, '.', '_' and '-'",
        });
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_alphanumeric() || name.contains("..") {
        return Err(NameError::BadEdge {
            name: shorten(name),
        });
    }
    Ok(())
}

fn shorten(name: &str) -> String {
    let mut s: String = name.chars().take(80).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "0", "a-b-c", &"x".repeat(63)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "../x",
            "a/b",
            "é",
            &"x".repeat(64),
            "a b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names() {
        for ok in ["vmlinuz", "initrd.img", "debian-12.qcow2", "A_b"] {
            assert_eq!(validate_file_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "a..b",
            "/abs",
            "a\0b",
            "a b",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
    }
}
