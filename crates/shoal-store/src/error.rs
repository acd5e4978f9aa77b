//! The store's one error type.

use crate::arena::ArenaFull;

/// A write the store cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The shard's arena cannot address more memory.
    #[error("shard memory address space exhausted")]
    AddressSpace,
    /// The value would exceed the length the caller allows.
    #[error("string exceeds maximum allowed size")]
    TooLarge,
    /// The key holds a value of another type than the operation works on.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
}

impl From<ArenaFull> for StoreError {
    fn from(_: ArenaFull) -> Self {
        StoreError::AddressSpace
    }
}
