//! The stores compared, one file each, and the name each goes by on the
//! command line.

mod ghost;
mod redb;
mod sled;

/// The stores, in table order.
pub const ALL: [&str; 4] = ["ghostbtree", "redb", "redb-sorted", "sled"];

/// Runs `f` with the store named `name` as its type parameter.
#[macro_export]
macro_rules! with_store {
    ($name:expr, $t:ident => $body:expr) => {
        match $name {
            "redb" => {
                type $t = $crate::stores::Redb;
                $body
            }
            "redb-sorted" => {
                type $t = $crate::stores::RedbSorted;
                $body
            }
            "sled" => {
                type $t = $crate::stores::Sled;
                $body
            }
            "ghostbtree" => {
                type $t = $crate::stores::Ghost;
                $body
            }
            other => panic!("unknown store {other:?}"),
        }
    };
}

pub use ghost::Ghost;
pub use redb::{Redb, RedbSorted};
pub use sled::Sled;
