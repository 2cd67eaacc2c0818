//! MAC addresses as the console writes them: text that must be a unicast address.

use vinfra_switch_control::{BadMac, Mac};

/// Why a MAC address from the console is not usable for a NIC or an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not a MAC address at all.
    #[error(transparent)]
    Syntax(#[from] BadMac),
    /// A group (multicast or broadcast) address.
    #[error("{0} is not a unicast MAC address")]
    NotUnicast(Mac),
}

/// The unicast MAC address written `text`.
pub fn unicast(text: &str) -> Result<Mac, MacError> {
    let mac: Mac = text.parse()?;
    if mac.is_group() {
        return Err(MacError::NotUnicast(mac));
    }
    Ok(mac)
}
