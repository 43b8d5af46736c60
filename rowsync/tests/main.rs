//! Integration tests against real PostgreSQL, as one binary so it links once.

mod support;

mod compile_fail;
mod graph;
mod load;
mod types;
mod capture_listen;
mod capture_triggers;
mod hub;
mod sync;
mod oracle;
