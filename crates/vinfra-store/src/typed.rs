//! JSON convenience over any [`Store`]: values are serde types encoded as JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::kv::{LeaseId, Revision, Store, StoreError};

/// Reads `key` and decodes it; returns the value and its `mod_revision` (for a later
/// compare-and-swap with [`crate::Compare::mod_revision`]).
pub fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, Revision)>, StoreError> {
    match store.get(key)? {
        None => Ok(None),
        Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv.mod_revision))),
    }
}

/// One decoded entry of [`range_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct JsonEntry<T> {
    /// The key.
    pub key: String,
    /// Its value, decoded.
    pub value: T,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
}

/// Reads and decodes every key under `prefix`, in key order, with the store revision they were
/// read at (to start a watch from).
pub fn range_json<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<(Vec<JsonEntry<T>>, Revision), StoreError> {
    let (kvs, rev) = store.range(prefix)?;
    let entries = kvs
        .into_iter()
        .map(|kv| {
            let value = decode(&kv.key, &kv.value)?;
            Ok(JsonEntry {
                key: kv.key,
                value,
                mod_revision: kv.mod_revision,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((entries, rev))
}

/// Encodes `value` as JSON and writes it (lease 0 = none); returns the new revision.
pub fn put_json<T: Serialize + ?Sized>(
    store: &dyn Store,
    key: &str,
    value: &T,
    lease: LeaseId,
) -> Result<Revision, StoreError> {
    store.put(key, &encode(key, value)?, lease)
}

/// Encodes `value` for an [`crate::Op::Put`] in a transaction.
pub fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Json {
        key: key.to_owned(),
        source,
    })
}

/// Decodes a value read from `key`.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Json {
        key: key.to_owned(),
        source,
    })
}
