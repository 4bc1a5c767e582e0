//! Power-loss tests: see below.
