//! Code shared by the integration tests.

pub mod faulty;
pub mod ops;
pub mod panicky;
pub mod rng;
