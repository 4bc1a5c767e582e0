//! Code shared by the integration tests.

pub mod faulty;
pub mod ops;
pub mod rng;
