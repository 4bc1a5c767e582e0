//! The stores compared, one file each, and the name each goes by on the
//! command line.

#[cfg(feature = "ghostbtree-file")]
mod ghost;
mod redb;
mod sled;

/// The stores, in table order.
pub const ALL: [&str; 3] = ["ghostbtree", "redb", "sled"];

/// Runs `f` with the store named `name` as its type parameter.
#[macro_export]
macro_rules! with_store {
    ($name:expr, $t:ident => $body:expr) => {
        match $name {
            "redb" => {
                type $t = $crate::stores::Redb;
                $body
            }
            "sled" => {
                type $t = $crate::stores::Sled;
                $body
            }
            #[cfg(feature = "ghostbtree-file")]
            "ghostbtree" => {
                type $t = $crate::stores::Ghost;
                $body
            }
            other => panic!("unknown or unavailable store {other:?}"),
        }
    };
}

/// Whether this build has the store (ghostbtree needs its file API).
pub fn available(name: &str) -> bool {
    match name {
        "redb" | "sled" => true,
        "ghostbtree" => cfg!(feature = "ghostbtree-file"),
        _ => false,
    }
}

#[cfg(feature = "ghostbtree-file")]
pub use ghost::Ghost;
pub use redb::Redb;
pub use sled::Sled;
