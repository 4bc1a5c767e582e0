//! Errors.
//!
//! Every operation returns `Result` because a persistent tree loads nodes from
//! storage and storage can fail. A failed load is always an error, never a
//! key reported absent.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::store::Address;

/// What went wrong, and where.
#[derive(Debug, Clone)]
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
        /// The largest accepted value.
        max: usize,
    },
    /// The input of [`BTree::from_sorted`](crate::BTree::from_sorted) is not
    /// strictly increasing by key: entry `index` is not greater than the one
    /// before it.
    Unsorted {
        /// Position of the first out-of-order entry (0-based).
        index: usize,
    },
    /// The store failed. Nothing was lost: the operation did not take
    /// effect (a failed load leaves the node a ghost, to be tried again).
    Io {
        /// What the tree was doing, e.g. "reading a node".
        during: &'static str,
        /// The record involved, if any.
        address: Option<Address>,
        /// The store's error (shared: every thread that waited for the same
        /// load gets it).
        source: Arc<io::Error>,
    },
    /// A record read from the store is not what the tree wrote there.
    Corrupt {
        /// The record (`None`: the commit record).
        address: Option<Address>,
        /// What is wrong with it.
        what: String,
    },
    /// A thread panicked while loading a node (in a key or value decoder);
    /// the node stays a ghost and the next access tries again.
    LoadPanicked {
        /// The node's record.
        address: Address,
    },
    /// An invariant of the engine did not hold: a bug in ghostbtree.
    Internal {
        /// Which invariant.
        what: &'static str,
    },
}

impl Error {
    pub(crate) fn io(during: &'static str, address: Option<Address>, source: io::Error) -> Error {
        Error::Io { during, address, source: Arc::new(source) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { setting, value, min, max } => {
                write!(f, "invalid config: {setting} is {value}, it must be between {min} and {max}")
            }
            Error::Unsorted { index: 0 } => write!(f, "sorted input expected: entry 0 is out of order"),
            Error::Unsorted { index } => write!(
                f,
                "sorted input expected: entry {index} does not have a greater key than entry {}",
                index - 1
            ),
            Error::Io { during, address: Some(address), source } => {
                write!(f, "store error while {during} at {address}: {source}")
            }
            Error::Io { during, address: None, source } => write!(f, "store error while {during}: {source}"),
            Error::Corrupt { address: Some(address), what } => {
                write!(f, "corrupt node record at {address}: {what}")
            }
            Error::Corrupt { address: None, what } => write!(f, "corrupt commit record: {what}"),
            Error::LoadPanicked { address } => {
                write!(f, "a thread panicked while loading the node at {address}")
            }
            Error::Internal { what } => {
                write!(f, "internal error (a bug in ghostbtree, please report): {what}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
