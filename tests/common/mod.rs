//! Code shared by the integration tests.

pub mod faulty;
pub mod hooked;
pub mod ops;
pub mod panicky;
pub mod rng;
