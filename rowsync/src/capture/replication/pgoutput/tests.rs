//! Unit tests: byte fixtures for every message kind and every error path, and properties over
//! generated, mutated and arbitrary bytes. `encode` writes messages as the server does, for the
//! properties.

pub(crate) mod encode;
mod errors;
mod fixtures;
mod props;
mod streams;
