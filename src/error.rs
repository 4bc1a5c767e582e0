//! Errors.
//!
//! Every operation returns `Result` because a persistent tree loads nodes from
//! storage and storage can fail. A failed load is always an error, never a
//! key reported absent.

use std::fmt;

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) value is out of its range.
    InvalidConfig {
        /// The setting, as named by its builder method.
        setting: &'static str,
        /// The value given.
        value: usize,
        /// The smallest accepted value.
        min: usize,
    },
    /// The input of [`BTree::from_sorted`](crate::BTree::from_sorted) is not
    /// strictly increasing by key: entry `index` is not greater than the one
    /// before it.
    Unsorted {
        /// Position of the first out-of-order entry (0-based).
        index: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { setting, value, min } => {
                write!(f, "invalid config: {setting} is {value}, it must be at least {min}")
            }
            Error::Unsorted { index } => write!(
                f,
                "sorted input expected: entry {index} does not have a greater key than entry {}",
                index - 1
            ),
        }
    }
}

impl std::error::Error for Error {}
