//! Integration tests against real PostgreSQL, as one binary so it links once.

mod support;

mod access;
mod capture_cases;
mod capture_listen;
mod capture_triggers;
mod compile_fail;
mod graph;
mod hints;
mod hub;
mod imports;
mod live;
mod live_stream;
mod load;
mod oracle;
mod pgoutput;
mod replication;
mod sync;
mod sync_rules;
mod tls;
mod types;
