//! The compact binary form of every CRDT (postcard).

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A CRDT's bytes could not be encoded or decoded.
#[derive(Debug, Error)]
#[error("crdt codec: {0}")]
pub struct CodecError(#[from] postcard::Error);

/// Encodes a state or delta: varint integers, no field names or tags.
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_stdvec(value)?)
}

/// Decodes [`to_bytes`]'s output; trailing bytes are an error.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError(postcard::Error::DeserializeBadEncoding));
    }
    Ok(value)
}
