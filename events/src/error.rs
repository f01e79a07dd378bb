use crate::values::Hash;

/// A value or event that breaks a rule of its own. Each variant names the field and limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("amount_minor must be an integer from 1 to 9007199254740991 (got {value})")]
    AmountOutOfRange { value: u64 },
    #[error("currency must be an ISO 4217 code of three capital letters (got {value:?})")]
    Currency { value: String },
    #[error("an id must be 1 to {max} characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit (got {value:?})")]
    Id { value: String, max: usize },
    #[error("text must be 1 to {max} characters and not only spaces (got {chars})")]
    TextLength { chars: usize, max: usize },
    #[error("text must not contain control characters")]
    TextControl,
    #[error("a hash must be 64 lowercase hex digits (got {value:?})")]
    Hash { value: String },
    #[error("the event is {bytes} bytes in canonical form; the limit is {max}")]
    EventTooLarge { bytes: usize, max: usize },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A chain that does not verify. Each variant names the first bad `seq`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event {}: malformed: {reason}", seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into()))]
    Malformed { seq: Option<u64>, reason: String },
    #[error("event {seq}: hash mismatch: declared {declared}, computed {computed}")]
    HashMismatch {
        seq: u64,
        declared: Hash,
        computed: Hash,
    },
    #[error("expected event {expected}, found event {found}")]
    SeqGap { expected: u64, found: u64 },
    #[error("event {seq}: broken link: prev is {found_prev}, the previous event's hash is {expected_prev}")]
    BrokenLink {
        seq: u64,
        expected_prev: Hash,
        found_prev: Hash,
    },
}

impl ChainError {
    /// The first bad position, where known.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ChainError::Malformed { seq, .. } => *seq,
            ChainError::HashMismatch { seq, .. } => Some(*seq),
            ChainError::SeqGap { expected, .. } => Some(*expected),
            ChainError::BrokenLink { seq, .. } => Some(*seq),
        }
    }
}
