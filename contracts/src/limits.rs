//! The limits a request can break, written once: the dispatcher refuses a task that breaks one when
//! it is published, and the worker's command line refuses the same flags with the same words.
//!
//! Each check returns a [`ContractError`] naming the field as a spec path (`spec.queue_size`); a
//! command line names the flag instead (see `freezer-worker`'s resolver).

use crate::error::ContractError;
use crate::size::ByteSize;

/// Smallest `max_segment_size`: below it the per-segment overhead (a manifest entry, an object, a
/// round trip) outweighs the data, and the engine's chunking needs room for its framing.
pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;

/// Largest `max_segment_size`: a segment is held in memory (raw and compressed) once per slot of
/// the queue, so a larger one would let one option exhaust a worker's memory.
pub const MAX_SEGMENT_SIZE: u64 = 64 << 20;

/// `max_segment_size` when the request gives none.
pub const DEFAULT_SEGMENT_SIZE: u64 = 2 << 20;

/// Largest `queue_size`: the pipeline starts a thread and holds a segment per unit.
pub const MAX_QUEUE_SIZE: u32 = 256;

/// Checks `max_segment_size` against [`MIN_SEGMENT_SIZE`]..=[`MAX_SEGMENT_SIZE`].
pub fn check_segment_size(path: &str, size: Option<ByteSize>) -> Result<(), ContractError> {
    match size {
        Some(s) if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&s.bytes()) => {
            Err(ContractError::invalid(
                path,
                format!(
                    "{s} is out of range {}..={}",
                    ByteSize(MIN_SEGMENT_SIZE),
                    ByteSize(MAX_SEGMENT_SIZE)
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Checks `queue_size` against 1..=[`MAX_QUEUE_SIZE`].
pub fn check_queue_size(path: &str, n: Option<u32>) -> Result<(), ContractError> {
    match n {
        Some(0) => Err(ContractError::invalid(
            path,
            "must be at least 1 (leave it out for the default)",
        )),
        Some(n) if n > MAX_QUEUE_SIZE => Err(ContractError::invalid(
            path,
            format!("{n} is more than {MAX_QUEUE_SIZE}"),
        )),
        _ => Ok(()),
    }
}

/// Checks a byte size or rate that must be above 0 when given (absent means the default, or no
/// limit).
pub fn check_positive_size(path: &str, size: Option<ByteSize>) -> Result<(), ContractError> {
    if size == Some(ByteSize(0)) {
        return Err(ContractError::invalid(
            path,
            "must be more than 0 (leave it out for the default)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_are_bounded() {
        let check = |n| check_segment_size("s", Some(ByteSize(n)));
        assert!(check(MIN_SEGMENT_SIZE).is_ok());
        assert!(check(MAX_SEGMENT_SIZE).is_ok());
        assert!(check(DEFAULT_SEGMENT_SIZE).is_ok());
        assert!(check(MIN_SEGMENT_SIZE - 1).is_err());
        assert!(check(MAX_SEGMENT_SIZE + 1).is_err());
        assert!(check_segment_size("s", None).is_ok());
    }

    #[test]
    fn queue_sizes_are_bounded() {
        assert!(check_queue_size("q", Some(1)).is_ok());
        assert!(check_queue_size("q", Some(MAX_QUEUE_SIZE)).is_ok());
        assert!(check_queue_size("q", Some(0)).is_err());
        assert!(check_queue_size("q", Some(MAX_QUEUE_SIZE + 1)).is_err());
        assert!(check_queue_size("q", None).is_ok());
    }
}
